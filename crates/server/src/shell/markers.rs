//! The marker parser: splits a shell's terminal output into what commands printed and the
//! integration's markers (`shell::integration`).
//!
//! A marker is an OSC sequence (`ESC ] … BEL`) whose body is one of `133;A;N`, `133;C;N`,
//! `133;D;N;STATUS` or `7;N;PATH`, with `N` the shell's nonce. Any other escape sequence,
//! a marker with the wrong nonce among them, is output, byte for byte. Markers may be split
//! across reads; the parser holds back only bytes that could still become a marker, so
//! output that cannot is passed on at once.

/// Longest OSC body considered (a path of `PATH_MAX` plus the prefix); longer is output.
const MAX_BODY_BYTES: usize = 4096 + 128;

const ESC: u8 = 0x1b;
const BEL: u8 = 0x07;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Bytes the command printed.
    Output(Vec<u8>),
    /// `133;A`: the shell shows its prompt (ready for a command line).
    Prompt,
    /// `133;C`: the command line starts executing.
    CommandStart,
    /// `133;D`: the command ended with this status.
    CommandEnd(i32),
    /// OSC 7: the shell's working directory.
    Cwd(Vec<u8>),
}

enum State {
    Text,
    /// Saw ESC; the next byte decides.
    Escape,
    /// Inside `ESC ]`, collecting the body.
    Osc(Vec<u8>),
    /// Inside the body, saw ESC: `\` ends it (ST).
    OscEscape(Vec<u8>),
}

/// The four prefixes a marker body starts with, each ending in the nonce.
struct Prefixes {
    prompt: Vec<u8>,
    start: Vec<u8>,
    end: Vec<u8>,
    cwd: Vec<u8>,
}

pub struct MarkerParser {
    prefixes: Prefixes,
    state: State,
}

impl MarkerParser {
    pub fn new(nonce: &str) -> Self {
        Self {
            prefixes: Prefixes {
                prompt: format!("133;A;{nonce}").into_bytes(),
                start: format!("133;C;{nonce}").into_bytes(),
                end: format!("133;D;{nonce};").into_bytes(),
                cwd: format!("7;{nonce};").into_bytes(),
            },
            state: State::Text,
        }
    }

    /// Parse the next bytes of terminal output; events come in the order of the bytes.
    pub fn feed(&mut self, bytes: &[u8], events: &mut Vec<Event>) {
        let mut output = Vec::new();
        let mut rest = bytes;
        while !rest.is_empty() {
            match &mut self.state {
                State::Text => match rest.iter().position(|&b| b == ESC) {
                    None => {
                        output.extend_from_slice(rest);
                        rest = &[];
                    }
                    Some(at) => {
                        output.extend_from_slice(&rest[..at]);
                        rest = &rest[at + 1..];
                        self.state = State::Escape;
                    }
                },
                State::Escape => {
                    if rest[0] == b']' {
                        self.state = State::Osc(Vec::new());
                    } else {
                        // Not an OSC: the ESC and this byte are output (the byte may be
                        // another ESC, handled as text again).
                        output.push(ESC);
                        self.state = State::Text;
                        continue;
                    }
                    rest = &rest[1..];
                }
                State::Osc(body) => {
                    let byte = rest[0];
                    rest = &rest[1..];
                    match byte {
                        BEL => {
                            let body = std::mem::take(body);
                            self.state = State::Text;
                            self.prefixes.finish(body, &[BEL], &mut output, events);
                        }
                        ESC => {
                            let body = std::mem::take(body);
                            self.state = State::OscEscape(body);
                        }
                        _ => {
                            body.push(byte);
                            if !self.prefixes.may_be_marker(body) {
                                output.extend_from_slice(b"\x1b]");
                                output.extend_from_slice(body);
                                self.state = State::Text;
                            }
                        }
                    }
                }
                State::OscEscape(body) => {
                    let body = std::mem::take(body);
                    self.state = State::Text;
                    if rest[0] == b'\\' {
                        rest = &rest[1..];
                        self.prefixes.finish(body, b"\x1b\\", &mut output, events);
                    } else {
                        // An ESC inside the body that is not ST: not ours, all output;
                        // the ESC starts over.
                        output.extend_from_slice(b"\x1b]");
                        output.extend_from_slice(&body);
                        self.state = State::Escape;
                    }
                }
            }
        }
        flush(&mut output, events);
    }
}

impl Prefixes {
    /// Whether a body collected so far can still turn out to be one of our markers.
    fn may_be_marker(&self, body: &[u8]) -> bool {
        if body.len() > MAX_BODY_BYTES {
            return false;
        }
        [&self.prompt, &self.start, &self.end, &self.cwd]
            .iter()
            .any(|prefix| prefix.starts_with(body) || body.starts_with(prefix))
    }

    /// A complete OSC: a marker, or output with its terminator.
    fn finish(
        &self,
        body: Vec<u8>,
        terminator: &[u8],
        output: &mut Vec<u8>,
        events: &mut Vec<Event>,
    ) {
        let marker = if body == self.prompt {
            Some(Event::Prompt)
        } else if body == self.start {
            Some(Event::CommandStart)
        } else if let Some(status) = body.strip_prefix(self.end.as_slice()) {
            std::str::from_utf8(status)
                .ok()
                .and_then(|s| s.parse().ok())
                .map(Event::CommandEnd)
        } else {
            body.strip_prefix(self.cwd.as_slice())
                .map(|path| Event::Cwd(path.to_vec()))
        };
        match marker {
            Some(event) => {
                flush(output, events);
                events.push(event);
            }
            None => {
                output.extend_from_slice(b"\x1b]");
                output.extend_from_slice(&body);
                output.extend_from_slice(terminator);
            }
        }
    }
}

fn flush(output: &mut Vec<u8>, events: &mut Vec<Event>) {
    if !output.is_empty() {
        events.push(Event::Output(std::mem::take(output)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONCE: &str = "n0nce";

    fn parse_in_pieces(input: &[u8], piece: usize) -> Vec<Event> {
        let mut parser = MarkerParser::new(NONCE);
        let mut events = Vec::new();
        for chunk in input.chunks(piece) {
            parser.feed(chunk, &mut events);
        }
        merge_output(events)
    }

    fn merge_output(events: Vec<Event>) -> Vec<Event> {
        let mut merged: Vec<Event> = Vec::new();
        for event in events {
            match (merged.last_mut(), event) {
                (Some(Event::Output(last)), Event::Output(more)) => last.extend(more),
                (_, event) => merged.push(event),
            }
        }
        merged
    }

    #[test]
    fn markers_are_found_at_every_split() {
        let input = b"\x1b]133;C;n0nce\x07hi\n\x1b]133;D;n0nce;3\x07\x1b]7;n0nce;/tmp\x1b\\\x1b]133;A;n0nce\x07";
        for piece in 1..input.len() {
            assert_eq!(
                parse_in_pieces(input, piece),
                vec![
                    Event::CommandStart,
                    Event::Output(b"hi\n".to_vec()),
                    Event::CommandEnd(3),
                    Event::Cwd(b"/tmp".to_vec()),
                    Event::Prompt,
                ],
                "split every {piece} bytes"
            );
        }
    }

    #[test]
    fn foreign_sequences_and_fake_markers_are_output_verbatim() {
        let input: &[u8] = b"\x1b[31mred\x1b[0m \x1b]0;title\x07 \x1b]133;D;0\x07 \x1b]133;D;other;0\x07 \x1b\x1b]x\x1b";
        for piece in 1..input.len() {
            let events = parse_in_pieces(input, piece);
            assert_eq!(
                events,
                vec![Event::Output(input[..input.len() - 1].to_vec())],
                "split every {piece} bytes"
            );
        }
    }

    #[test]
    fn output_that_cannot_become_a_marker_is_not_held() {
        let mut parser = MarkerParser::new(NONCE);
        let mut events = Vec::new();
        parser.feed(b"\x1b]13", &mut events);
        assert!(events.is_empty(), "could still be a marker");
        parser.feed(b"4", &mut events);
        assert_eq!(events, vec![Event::Output(b"\x1b]134".to_vec())]);
    }

    #[test]
    fn an_unparsable_status_is_output() {
        let input = b"\x1b]133;D;n0nce;x\x07";
        assert_eq!(
            parse_in_pieces(input, input.len()),
            vec![Event::Output(input.to_vec())]
        );
    }
}
