//! A Server-Sent Events decoder: bytes in, `(event, data)` pairs out. No I/O, never panics
//! on any input (a hostile or broken controller stream must not take the agent down).
//!
//! Follows the WHATWG rules the push stream needs: lines end in LF, CRLF or CR; `event:` and
//! `data:` fields (several `data:` lines join with LF); a blank line dispatches; comments
//! (`:` lines, used for keep-alives) and unknown fields are ignored. A line longer than
//! [`MAX_EVENT_BYTES`] or an event growing past it is dropped rather than buffered forever.

/// Largest event (or line) kept; a rule set for a large site is well below this.
pub const MAX_EVENT_BYTES: usize = 16 << 20;

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// `message` when the stream named none.
    pub event: String,
    pub data: String,
}

/// Incremental decoder state.
#[derive(Debug, Default)]
pub struct SseDecoder {
    line: Vec<u8>,
    /// The previous chunk ended in CR: a following LF belongs to that line end.
    after_cr: bool,
    /// The current line overflowed; skip to its end.
    skipping: bool,
    event: String,
    data: String,
    has_data: bool,
    oversized: bool,
}

impl SseDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds a chunk; returns the events it completed.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        let mut out = Vec::new();
        for &byte in chunk {
            if self.after_cr {
                self.after_cr = false;
                if byte == b'\n' {
                    continue;
                }
            }
            match byte {
                b'\n' | b'\r' => {
                    self.after_cr = byte == b'\r';
                    self.end_line(&mut out);
                }
                _ if self.skipping => {}
                _ => {
                    if self.line.len() >= MAX_EVENT_BYTES {
                        self.skipping = true;
                        self.oversized = true;
                        self.line.clear();
                    } else {
                        self.line.push(byte);
                    }
                }
            }
        }
        out
    }

    fn end_line(&mut self, out: &mut Vec<SseEvent>) {
        self.skipping = false;
        let line = std::mem::take(&mut self.line);
        if line.is_empty() {
            self.dispatch(out);
            return;
        }
        if line[0] == b':' {
            return;
        }
        let text = String::from_utf8_lossy(&line);
        let (field, value) = match text.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (text.as_ref(), ""),
        };
        match field {
            "event" => self.event = value.to_string(),
            "data" => {
                if self.data.len() + value.len() + 1 > MAX_EVENT_BYTES {
                    self.oversized = true;
                    return;
                }
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            _ => {}
        }
    }

    fn dispatch(&mut self, out: &mut Vec<SseEvent>) {
        let event = std::mem::take(&mut self.event);
        let data = std::mem::take(&mut self.data);
        let has_data = std::mem::replace(&mut self.has_data, false);
        let oversized = std::mem::replace(&mut self.oversized, false);
        if has_data && !oversized {
            out.push(SseEvent {
                event: if event.is_empty() {
                    "message".into()
                } else {
                    event
                },
                data,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn events_split_across_chunks_and_line_ends() {
        let mut decoder = SseDecoder::new();
        let mut events = decoder.feed(b": keep-alive\n\nevent: rule-set\r\ndata: {\"a\":");
        assert!(events.is_empty());
        events.extend(decoder.feed(b"1}\r"));
        events.extend(decoder.feed(b"\n\r\ndata: x\ndata: y\n\n"));
        assert_eq!(
            events,
            vec![
                SseEvent {
                    event: "rule-set".into(),
                    data: "{\"a\":1}".into()
                },
                SseEvent {
                    event: "message".into(),
                    data: "x\ny".into()
                },
            ]
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..16)) {
            let mut decoder = SseDecoder::new();
            for chunk in chunks {
                let _ = decoder.feed(&chunk);
            }
        }

        #[test]
        fn chunking_does_not_change_events(split in 0usize..60) {
            let stream = b"event: in-sync\ndata: {\"version\":1,\"hash\":\"ab\"}\n\n: ping\n\n";
            let split = split.min(stream.len());
            let mut whole = SseDecoder::new();
            let expected = whole.feed(stream);
            let mut parts = SseDecoder::new();
            let mut got = parts.feed(&stream[..split]);
            got.extend(parts.feed(&stream[split..]));
            prop_assert_eq!(got, expected);
        }
    }
}
