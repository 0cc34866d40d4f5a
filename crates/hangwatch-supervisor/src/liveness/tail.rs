//! The last lines a program wrote on stdout and stderr, each with its time, kept for the
//! incident: a traceback a worker thread printed just before the hang is often its cause.
//!
//! Bounded per stream by [`TAIL_LINES`] lines and [`TAIL_BYTES`] bytes of text (a longer line
//! is cut), whichever comes first, so that a chatty program costs a fixed amount of memory:
//! about 16 KiB of text plus 50 line headers per stream.

use std::collections::VecDeque;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// The most lines kept per stream.
pub const TAIL_LINES: usize = 50;

/// The most bytes of text kept per stream.
pub const TAIL_BYTES: usize = 16 * 1024;

/// One line of output and when it was read.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TailLine {
    /// When hangwatch read it, RFC 3339 with milliseconds, UTC.
    pub at: String,
    /// The line, without its newline (invalid UTF-8 replaced).
    pub line: String,
}

/// What a program last said, per stream, oldest line first.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct LastOutput {
    /// The last lines of stdout (of a pseudo-terminal: of both streams).
    pub stdout: Vec<TailLine>,
    /// The last lines of stderr.
    pub stderr: Vec<TailLine>,
}

impl LastOutput {
    /// Whether nothing was said.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.stdout.is_empty() && self.stderr.is_empty()
    }
}

/// The tail of one stream.
#[derive(Debug, Default)]
pub struct StreamTail {
    lines: VecDeque<(SystemTime, String)>,
    bytes: usize,
    /// A line begun and not ended yet (bounded like the rest).
    partial: Vec<u8>,
    partial_at: Option<SystemTime>,
}

impl StreamTail {
    /// Keeps one whole line (without its newline), read at `at`.
    pub fn line(&mut self, line: &[u8], at: SystemTime) {
        let line = &line[..line.len().min(TAIL_BYTES)];
        let text = String::from_utf8_lossy(line).into_owned();
        self.bytes += text.len();
        self.lines.push_back((at, text));
        while self.lines.len() > TAIL_LINES || self.bytes > TAIL_BYTES {
            match self.lines.pop_front() {
                Some((_, old)) => self.bytes -= old.len(),
                None => break,
            }
        }
    }

    /// Keeps raw bytes as they arrive, split into lines here.
    pub fn bytes(&mut self, bytes: &[u8], at: SystemTime) {
        let mut rest = bytes;
        while let Some(end) = rest.iter().position(|b| *b == b'\n') {
            let (head, tail) = rest.split_at(end);
            let head = head.strip_suffix(b"\r").unwrap_or(head);
            if self.partial.is_empty() {
                self.line(head, at);
            } else {
                let mut whole = std::mem::take(&mut self.partial);
                whole.extend_from_slice(head);
                let began = self.partial_at.take().unwrap_or(at);
                self.line(&whole, began);
            }
            rest = &tail[1..];
        }
        if !rest.is_empty() && self.partial.len() < TAIL_BYTES {
            self.partial_at.get_or_insert(at);
            let room = TAIL_BYTES - self.partial.len();
            self.partial
                .extend_from_slice(&rest[..rest.len().min(room)]);
        }
    }

    /// The heap this tail holds, in bytes (for the memory figure).
    #[cfg(test)]
    fn heap_bytes(&self) -> usize {
        self.lines.capacity() * std::mem::size_of::<(SystemTime, String)>()
            + self.lines.iter().map(|(_, l)| l.capacity()).sum::<usize>()
            + self.partial.capacity()
    }

    /// The lines kept, a line not ended yet last.
    #[must_use]
    pub fn lines(&self) -> Vec<TailLine> {
        let stamp = |at: SystemTime| humantime::format_rfc3339_millis(at).to_string();
        let mut out: Vec<TailLine> = self
            .lines
            .iter()
            .map(|(at, line)| TailLine {
                at: stamp(*at),
                line: line.clone(),
            })
            .collect();
        if let (false, Some(at)) = (self.partial.is_empty(), self.partial_at) {
            out.push(TailLine {
                at: stamp(at),
                line: String::from_utf8_lossy(&self.partial).into_owned(),
            });
        }
        out
    }
}

/// The tails of both streams of one program.
#[derive(Debug, Default)]
pub struct OutputTail {
    /// stdout (or a pseudo-terminal's merged streams).
    pub stdout: StreamTail,
    /// stderr.
    pub stderr: StreamTail,
}

impl OutputTail {
    /// What the program last said, or `None` when it said nothing.
    #[must_use]
    pub fn last(&self) -> Option<LastOutput> {
        let last = LastOutput {
            stdout: self.stdout.lines(),
            stderr: self.stderr.lines(),
        };
        (!last.is_empty()).then_some(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_fifty_lines_and_the_partial_one() {
        let mut tail = StreamTail::default();
        let at = SystemTime::UNIX_EPOCH;
        for n in 0..120 {
            tail.bytes(format!("line {n}\n").as_bytes(), at);
        }
        tail.bytes(b"Traceback (most rec", at);
        tail.bytes(b"ent call last):", at);
        let lines = tail.lines();
        assert_eq!(lines.len(), TAIL_LINES + 1);
        assert_eq!(lines[0].line, "line 70");
        assert_eq!(lines[TAIL_LINES - 1].line, "line 119");
        assert_eq!(lines[TAIL_LINES].line, "Traceback (most recent call last):");
        assert_eq!(lines[0].at, "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn keeps_at_most_sixteen_kib_of_text() {
        let mut tail = StreamTail::default();
        let long = vec![b'x'; 6000];
        for _ in 0..10 {
            tail.line(&long, SystemTime::UNIX_EPOCH);
        }
        let kept: usize = tail.lines().iter().map(|l| l.line.len()).sum();
        assert!(kept <= TAIL_BYTES, "{kept}");
        assert_eq!(tail.lines().len(), 2);
        let mut huge = StreamTail::default();
        huge.line(&vec![b'y'; 100_000], SystemTime::UNIX_EPOCH);
        assert_eq!(huge.lines()[0].line.len(), TAIL_BYTES);
    }

    /// The memory figure of the docs: what a full tail holds, for lines of 80 characters (the
    /// line bound) and of 400 (the byte bound), with a long line pending.
    #[test]
    fn a_full_tail_holds_a_bounded_heap() {
        for width in [80usize, 400] {
            let mut tail = StreamTail::default();
            let line = vec![b'x'; width];
            for _ in 0..1000 {
                tail.line(&line, SystemTime::UNIX_EPOCH);
            }
            tail.bytes(&vec![b'y'; 20_000], SystemTime::UNIX_EPOCH);
            let heap = tail.heap_bytes();
            eprintln!("tail of one stream, {width}-byte lines + 16 KiB pending: {heap} bytes");
            assert!(heap <= 3 * TAIL_BYTES + 4096, "{heap}");
        }
    }
}
