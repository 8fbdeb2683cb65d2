//! Server-sent events: an incremental parser fed arbitrary byte chunks.
//!
//! The network splits a stream wherever it likes — mid-line, mid-UTF-8
//! character, mid-JSON — so the parser keeps the unfinished line between
//! calls and only decodes complete lines. It follows the WHATWG
//! `text/event-stream` rules that matter to model APIs: lines end with `\n`,
//! `\r\n` or a lone `\r`; `event:` names the event; several `data:` lines join
//! with `\n`; lines starting with `:` are comments (keep-alives) and ignored; a
//! blank line dispatches the event. `data: [DONE]` is an ordinary event here:
//! what it means belongs to the wire format, see [`SseEvent::is_done`].
//!
//! Memory is bounded while reading: an unfinished line or event that grows
//! past `MAX_EVENT_BYTES` (a server that never ends a line) is an error, not
//! an ever-growing buffer.

/// The largest line or event the parser holds. Model streams send events of
/// a few kilobytes; a whole non-streamed reply fits many times over.
pub const MAX_EVENT_BYTES: usize = 16 << 20;

/// An event or line grew past the parser's limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLong {
    pub limit: usize,
}

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// The `event:` field, if the server named the event.
    pub event: Option<String>,
    /// Every `data:` line of the event, joined with `\n`.
    pub data: String,
}

impl SseEvent {
    /// OpenAI's end-of-stream sentinel, `data: [DONE]`.
    pub fn is_done(&self) -> bool {
        self.data.trim() == "[DONE]"
    }
}

/// The parser state between chunks.
#[derive(Debug)]
pub struct SseParser {
    /// Bytes of the line not yet terminated.
    line: Vec<u8>,
    /// The previous chunk ended with `\r`; a `\n` opening the next chunk
    /// belongs to the same line ending.
    after_cr: bool,
    event: Option<String>,
    data: String,
    /// At least one `data:` field was seen for the pending event (an empty
    /// `data:` line still counts).
    has_data: bool,
    /// The most bytes a pending line plus the pending event may hold.
    limit: usize,
}

impl Default for SseParser {
    fn default() -> Self {
        SseParser::with_limit(MAX_EVENT_BYTES)
    }
}

impl SseParser {
    pub fn new() -> Self {
        SseParser::default()
    }

    /// A parser that holds at most `limit` bytes of one line and event.
    pub fn with_limit(limit: usize) -> Self {
        SseParser {
            line: Vec::new(),
            after_cr: false,
            event: None,
            data: String::new(),
            has_data: false,
            limit,
        }
    }

    /// Feed the next chunk of the body; returns the events it completed, or
    /// `TooLong` once a line or event passes the limit (the parser holds no
    /// more than the limit at any time).
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Vec<SseEvent>, TooLong> {
        let mut events = Vec::new();
        let mut start = 0;
        for (at, &byte) in chunk.iter().enumerate() {
            match byte {
                b'\n' if self.after_cr && at == start && self.line.is_empty() => {
                    // Second half of a `\r\n` split across (or within) chunks.
                    self.after_cr = false;
                    start = at + 1;
                }
                b'\n' | b'\r' => {
                    self.hold(&chunk[start..at])?;
                    let line = std::mem::take(&mut self.line);
                    self.process_line(&line, &mut events);
                    self.after_cr = byte == b'\r';
                    start = at + 1;
                }
                _ => self.after_cr = false,
            }
        }
        self.hold(&chunk[start..])?;
        Ok(events)
    }

    /// Add `bytes` to the pending line, within the limit.
    fn hold(&mut self, bytes: &[u8]) -> Result<(), TooLong> {
        if self.line.len() + self.data.len() + bytes.len() > self.limit {
            self.line.clear();
            self.data.clear();
            return Err(TooLong { limit: self.limit });
        }
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    /// The body ended: an unterminated last line still counts, and a pending
    /// event is dispatched even without its closing blank line (servers that
    /// close the connection right after the last `data:` line are common
    /// enough to tolerate).
    pub fn finish(&mut self) -> Option<SseEvent> {
        let mut events = Vec::new();
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.process_line(&line, &mut events);
        }
        self.dispatch(&mut events);
        self.after_cr = false;
        events.pop()
    }

    fn process_line(&mut self, line: &[u8], events: &mut Vec<SseEvent>) {
        if line.is_empty() {
            self.dispatch(events);
            return;
        }
        if line[0] == b':' {
            return;
        }
        let text = String::from_utf8_lossy(line);
        let (field, value) = match text.find(':') {
            Some(colon) => {
                let value = &text[colon + 1..];
                (&text[..colon], value.strip_prefix(' ').unwrap_or(value))
            }
            None => (text.as_ref(), ""),
        };
        match field {
            "event" => self.event = Some(value.to_string()),
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            // `id` and `retry` steer browser reconnection, which a model
            // request never does; unknown fields are ignored by the spec.
            _ => {}
        }
    }

    fn dispatch(&mut self, events: &mut Vec<SseEvent>) {
        let event = self.event.take();
        if !self.has_data {
            return;
        }
        self.has_data = false;
        events.push(SseEvent {
            event,
            data: std::mem::take(&mut self.data),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(event: Option<&str>, data: &str) -> SseEvent {
        SseEvent {
            event: event.map(str::to_string),
            data: data.to_string(),
        }
    }

    /// Every way of cutting `input` into pieces of `size` bytes must give the
    /// same events as feeding it whole.
    fn parse_in_pieces(input: &[u8], size: usize) -> Vec<SseEvent> {
        let mut parser = SseParser::new();
        let mut events = Vec::new();
        for piece in input.chunks(size) {
            events.extend(parser.feed(piece).unwrap());
        }
        events.extend(parser.finish());
        events
    }

    #[test]
    fn parses_the_table_whatever_the_chunking() {
        #[rustfmt::skip]
        let table: Vec<(&str, &[u8], Vec<SseEvent>)> = vec![
            ("single data line", b"data: hello\n\n", vec![ev(None, "hello")]),
            ("crlf line endings", b"data: a\r\n\r\ndata: b\r\n\r\n", vec![ev(None, "a"), ev(None, "b")]),
            ("lone cr line endings", b"data: a\r\rdata: b\r\r", vec![ev(None, "a"), ev(None, "b")]),
            (
                "named events",
                b"event: message_start\ndata: {\"type\":\"message_start\"}\n\nevent: ping\ndata: {}\n\n",
                vec![ev(Some("message_start"), "{\"type\":\"message_start\"}"), ev(Some("ping"), "{}")],
            ),
            ("multi-line data joins with newline", b"data: one\ndata: two\ndata:three\n\n", vec![ev(None, "one\ntwo\nthree")]),
            ("comments are keep-alives", b": OPENROUTER PROCESSING\n\n: ping\ndata: x\n\n", vec![ev(None, "x")]),
            ("data-only keep-alive is data", b"data: :ping\n\n", vec![ev(None, ":ping")]),
            ("done sentinel", b"data: [DONE]\n\n", vec![ev(None, "[DONE]")]),
            ("no space after colon", b"data:{\"a\":1}\n\n", vec![ev(None, "{\"a\":1}")]),
            ("only one leading space is stripped", b"data:  two\n\n", vec![ev(None, " two")]),
            ("empty data line still dispatches", b"data:\n\n", vec![ev(None, "")]),
            ("event without data is dropped", b"event: ping\n\ndata: y\n\n", vec![ev(None, "y")]),
            ("id and retry fields ignored", b"id: 7\nretry: 100\ndata: z\n\n", vec![ev(None, "z")]),
            ("field without colon", b"data\n\n", vec![ev(None, "")]),
            ("utf-8 survives any split", "data: héllo wörld ✓ 🦀\n\n".as_bytes(), vec![ev(None, "héllo wörld ✓ 🦀")]),
            ("unterminated last event is flushed", b"data: tail", vec![ev(None, "tail")]),
            ("pending event without blank line is flushed", b"data: tail\n", vec![ev(None, "tail")]),
            ("blank lines alone dispatch nothing", b"\n\n\r\n\n", vec![]),
        ];
        for (name, input, expected) in table {
            for size in [1, 2, 3, 5, 7, 64, input.len().max(1)] {
                assert_eq!(
                    parse_in_pieces(input, size),
                    expected,
                    "{name}, pieces of {size}"
                );
            }
        }
    }

    #[test]
    fn crlf_split_between_chunks_is_one_line_ending() {
        let mut parser = SseParser::new();
        assert_eq!(parser.feed(b"data: a\r").unwrap(), vec![]);
        assert_eq!(parser.feed(b"\n\r").unwrap(), vec![ev(None, "a")]);
        assert_eq!(
            parser.feed(b"\ndata: b\r\n\r\n").unwrap(),
            vec![ev(None, "b")]
        );
        assert_eq!(parser.finish(), None);
    }

    #[test]
    fn event_name_resets_after_dispatch() {
        let mut parser = SseParser::new();
        let events = parser
            .feed(b"event: error\ndata: 1\n\ndata: 2\n\n")
            .unwrap();
        assert_eq!(events, vec![ev(Some("error"), "1"), ev(None, "2")]);
    }

    #[test]
    fn done_is_recognised_with_surrounding_space() {
        assert!(ev(None, "[DONE]").is_done());
        assert!(ev(None, " [DONE] ").is_done());
        assert!(!ev(None, "{\"done\":true}").is_done());
    }

    #[test]
    fn a_line_or_event_past_the_limit_is_refused_while_reading() {
        let mut parser = SseParser::with_limit(16);
        assert_eq!(parser.feed(b"data: 0123").unwrap(), vec![]);
        // A server that never ends its line: refused before the buffer grows.
        assert_eq!(parser.feed(b"456789abcdef"), Err(TooLong { limit: 16 }));
        // Many data lines of one event count together.
        let mut parser = SseParser::with_limit(12);
        assert_eq!(parser.feed(b"data: 0123\n").unwrap(), vec![]);
        assert_eq!(parser.feed(b"data: 4567\n"), Err(TooLong { limit: 12 }));
        // Events that end in time never hit it.
        let mut parser = SseParser::with_limit(16);
        for _ in 0..100 {
            assert_eq!(
                parser.feed(b"data: 0123\n\n").unwrap(),
                vec![ev(None, "0123")]
            );
        }
    }
}
