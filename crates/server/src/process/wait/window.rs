//! The bounded window a `match` condition searches: the last bytes of one output stream,
//! so a match split across chunks is found once its last chunk arrives.
//!
//! The window keeps at most `limit` bytes plus one byte of context before them once it has
//! been trimmed, so `^` and `\b` at the window's start judge the real text, not the cut.
//! Output the wait did not see (evicted) breaks the stream: the window starts over.

use regex::bytes::Regex;

pub struct Window {
    limit: usize,
    buf: Vec<u8>,
    /// Stream offset of `buf[0]`.
    start: u64,
    /// `buf[0]` is context kept from trimmed text, never part of a match.
    has_context: bool,
}

/// A match: where it starts in the stream, its length, and its bytes.
#[derive(Debug, PartialEq, Eq)]
pub struct Found<'a> {
    pub offset: u64,
    pub bytes: &'a [u8],
}

impl Window {
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            buf: Vec::new(),
            start: 0,
            has_context: false,
        }
    }

    fn end(&self) -> u64 {
        self.start + self.buf.len() as u64
    }

    /// Append the chunk that starts at stream `offset` and search the window.
    pub fn push<'a>(&'a mut self, regex: &Regex, offset: u64, chunk: &[u8]) -> Option<Found<'a>> {
        if offset != self.end() {
            self.buf.clear();
            self.start = offset;
            self.has_context = false;
        }
        self.trim_to(self.limit.saturating_sub(chunk.len()));
        self.buf.extend_from_slice(chunk);
        let from = usize::from(self.has_context);
        let found = regex.find_at(&self.buf, from)?;
        Some(Found {
            offset: self.start + found.start() as u64,
            bytes: &self.buf[found.range()],
        })
    }

    /// Keep the last `keep` bytes (and one byte of context before them).
    fn trim_to(&mut self, keep: usize) {
        let text = self.buf.len() - usize::from(self.has_context);
        if text <= keep {
            return;
        }
        let cut = self.buf.len() - keep - 1;
        self.buf.drain(..cut);
        self.start += cut as u64;
        self.has_context = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regex(pattern: &str) -> Regex {
        Regex::new(pattern).expect("valid regex")
    }

    #[test]
    fn a_match_split_across_chunks_is_found_with_its_stream_offset() {
        let re = regex("listening");
        let mut window = Window::new(64);
        assert_eq!(window.push(&re, 0, b"server lis"), None);
        let found = window.push(&re, 10, b"tening on 80").expect("match");
        assert_eq!(found.offset, 7);
        assert_eq!(found.bytes, b"listening");
    }

    #[test]
    fn the_window_bounds_what_a_match_may_span() {
        let re = regex("a.{8}b");
        let mut window = Window::new(6);
        assert_eq!(window.push(&re, 0, b"a1234"), None);
        assert_eq!(
            window.push(&re, 5, b"5678b"),
            None,
            "the match spans 10 > 6"
        );
        let mut wide = Window::new(16);
        wide.push(&re, 0, b"a1234");
        assert!(wide.push(&re, 5, b"5678b").is_some());
    }

    #[test]
    fn trimmed_text_does_not_look_like_the_start_of_the_output() {
        let re = regex("^b");
        let mut window = Window::new(2);
        assert_eq!(window.push(&re, 0, b"aaaa"), None);
        assert_eq!(window.push(&re, 4, b"b"), None, "b is not at the start");
        let boundary = regex(r"\bb");
        let mut window = Window::new(2);
        window.push(&boundary, 0, b"aaaa");
        assert_eq!(window.push(&boundary, 4, b"b"), None, "ab has no boundary");
    }

    #[test]
    fn a_gap_in_the_stream_starts_the_window_over() {
        let re = regex("ab");
        let mut window = Window::new(64);
        window.push(&re, 0, b"a");
        assert_eq!(window.push(&re, 5, b"b"), None, "bytes 1..5 were not seen");
        let found = window.push(&re, 6, b"ab").expect("match");
        assert_eq!(found.offset, 6);
    }

    #[test]
    fn binary_output_matches_as_bytes() {
        let re = regex(r"(?-u)\xff\x00");
        let mut window = Window::new(64);
        let found = window.push(&re, 3, b"\x01\xff\x00").expect("match");
        assert_eq!((found.offset, found.bytes), (4, &b"\xff\x00"[..]));
    }
}
