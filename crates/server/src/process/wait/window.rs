//! The bounded window a `match` condition searches: the last bytes of one output stream,
//! so a match split across chunks is found once its last chunk arrives.
//!
//! Bytes before the window are kept as context (at least one once it has been trimmed), so
//! `^` and `\b` at the window's start judge the real text, not the cut.
//! Output the wait did not see (evicted) breaks the stream: the window starts over.

use regex::bytes::{Regex, RegexBuilder};

/// The compiled form of a pattern may use this much memory (the regex crate's default is
/// 10 MiB; sixteen waits per session each with several conditions should not).
const REGEX_SIZE_LIMIT: usize = 1024 * 1024;

/// A compiled `match` regex and, when the pattern bounds it, its longest match: then only
/// the bytes a match ending in the newest chunk can cover are searched again, so a literal
/// costs each chunk its own length rather than the window's.
pub struct Pattern {
    regex: Regex,
    longest: Option<usize>,
}

impl Pattern {
    pub fn new(pattern: &str) -> Result<Self, String> {
        let regex = RegexBuilder::new(pattern)
            .size_limit(REGEX_SIZE_LIMIT)
            .build()
            .map_err(|err| format!("invalid regex: {err}"))?;
        // Parsed as `regex::bytes` does; a failure here only loses the shortcut.
        let longest = regex_syntax::ParserBuilder::new()
            .utf8(false)
            .build()
            .parse(pattern)
            .ok()
            .and_then(|hir| hir.properties().maximum_len());
        Ok(Self { regex, longest })
    }
}

pub struct Window {
    limit: usize,
    buf: Vec<u8>,
    /// Stream offset of `buf[0]`.
    start: u64,
    /// `buf[..first]` is context kept from trimmed text: seen by `^` and `\b`, never
    /// part of a match.
    first: usize,
}

/// A match: where it starts in the stream, and its bytes.
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
            first: 0,
        }
    }

    fn end(&self) -> u64 {
        self.start + self.buf.len() as u64
    }

    /// Append the chunk that starts at stream `offset` and search for a match that ends
    /// in it (none can end earlier: the previous chunks were searched).
    pub fn push<'a>(
        &'a mut self,
        pattern: &Pattern,
        offset: u64,
        chunk: &[u8],
    ) -> Option<Found<'a>> {
        if offset != self.end() {
            self.buf.clear();
            self.start = offset;
            self.first = 0;
        }
        self.compact(chunk.len());
        let new_at = self.buf.len();
        self.buf.extend_from_slice(chunk);
        // The window: the last `limit` bytes, or the whole chunk when it is longer.
        let window_at = self
            .buf
            .len()
            .saturating_sub(self.limit.max(chunk.len()))
            .max(self.first);
        let reach_at = pattern.longest.map_or(0, |longest| {
            new_at.saturating_sub(longest.saturating_sub(1))
        });
        let found = pattern.regex.find_at(&self.buf, window_at.max(reach_at))?;
        Some(Found {
            offset: self.start + found.start() as u64,
            bytes: &self.buf[found.range()],
        })
    }

    /// Before appending `incoming` bytes: once the buffer would pass twice the window,
    /// drop all but the window and one byte of context (amortized: each byte is moved
    /// about once).
    fn compact(&mut self, incoming: usize) {
        if self.buf.len() + incoming <= 2 * self.limit + 1 {
            return;
        }
        let keep = self.limit.min(self.buf.len()) + 1;
        let Some(cut) = self.buf.len().checked_sub(keep) else {
            return;
        };
        self.buf.drain(..cut);
        self.start += cut as u64;
        self.first = self.first.saturating_sub(cut).max(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regex(pattern: &str) -> Pattern {
        Pattern::new(pattern).expect("valid regex")
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
    fn a_long_stream_is_compacted_without_losing_offsets_or_split_matches() {
        for pattern in ["needle", "ne+dle"] {
            let re = regex(pattern);
            let mut window = Window::new(16);
            let mut offset = 0;
            for _ in 0..100 {
                assert_eq!(window.push(&re, offset, b"haystack-"), None);
                offset += 9;
            }
            assert!(window.buf.len() <= 2 * 16 + 1 + 9, "{pattern}: bounded");
            assert_eq!(window.push(&re, offset, b"nee"), None);
            let found = window.push(&re, offset + 3, b"dle!").expect(pattern);
            assert_eq!((found.offset, found.bytes), (offset, &b"needle"[..]));
        }
    }

    #[test]
    fn binary_output_matches_as_bytes() {
        let re = regex(r"(?-u)\xff\x00");
        let mut window = Window::new(64);
        let found = window.push(&re, 3, b"\x01\xff\x00").expect("match");
        assert_eq!((found.offset, found.bytes), (4, &b"\xff\x00"[..]));
    }
}
