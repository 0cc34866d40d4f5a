//! Cutting a byte stream into lines, with bounded memory.

/// The longest line held back while waiting for its end; a longer line is passed on in pieces
/// of this size, so a program that writes megabytes without a newline cannot grow hangwatch.
pub const MAX_LINE: usize = 16 * 1024;

/// Splits a stream of chunks into lines.
///
/// Lines are passed on without their `\n`, and without a `\r` before it (programs writing to a
/// pseudo-terminal end lines with `\r\n`). A line cut across chunks is kept until its end
/// arrives; a line longer than [`MAX_LINE`] is passed on in pieces of [`MAX_LINE`] bytes. The
/// output does not depend on where the chunks were cut. Bytes are kept as they are: a line need
/// not be UTF-8.
#[derive(Debug, Default)]
pub struct LineSplitter {
    /// The start of a line whose end has not arrived: at most [`MAX_LINE`] bytes, and a `\r`.
    partial: Vec<u8>,
}

impl LineSplitter {
    /// A splitter with nothing held.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Passes each line completed by `bytes` to `emit`, and keeps the rest.
    pub fn push(&mut self, bytes: &[u8], mut emit: impl FnMut(&[u8])) {
        let mut rest = bytes;
        while let Some(end) = rest.iter().position(|&b| b == b'\n') {
            self.complete(&rest[..end], &mut emit);
            rest = &rest[end + 1..];
        }
        self.hold(rest, &mut emit);
    }

    /// Passes on what is held (a last line without `\n`), at the end of the stream.
    pub fn finish(&mut self, mut emit: impl FnMut(&[u8])) {
        if !self.partial.is_empty() {
            self.complete(&[], &mut emit);
        }
    }

    /// Whether part of a line is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.partial.is_empty()
    }

    /// Ends the current line with `tail`, its last bytes before the `\n`.
    fn complete(&mut self, tail: &[u8], emit: &mut impl FnMut(&[u8])) {
        let mut tail = tail;
        if let [head @ .., b'\r'] = tail {
            tail = head;
        } else if tail.is_empty() && self.partial.last() == Some(&b'\r') {
            self.partial.pop();
        }
        if !self.partial.is_empty() {
            self.hold(tail, emit);
            // At most one byte over (a `\r` that turned out to be inside the line).
            for piece in self.partial.chunks(MAX_LINE) {
                emit(piece);
            }
            self.partial.clear();
            return;
        }
        // The common case: a whole line within one chunk, passed on without a copy.
        while tail.len() > MAX_LINE {
            emit(&tail[..MAX_LINE]);
            tail = &tail[MAX_LINE..];
        }
        emit(tail);
    }

    /// Keeps `bytes` (none of them `\n`) as part of the current line; whenever [`MAX_LINE`]
    /// bytes are held and more arrive, the held bytes are passed on as one piece. A `\r` after
    /// [`MAX_LINE`] bytes is held too, until it is known whether a `\n` follows it.
    fn hold(&mut self, bytes: &[u8], emit: &mut impl FnMut(&[u8])) {
        let mut rest = bytes;
        while let Some(&first) = rest.first() {
            if self.partial.len() == MAX_LINE && first == b'\r' {
                self.partial.push(b'\r');
                rest = &rest[1..];
                continue;
            }
            if self.partial.len() >= MAX_LINE {
                // More of the line: the held `\r`, if any, was part of it.
                emit(&self.partial[..MAX_LINE]);
                self.partial.drain(..MAX_LINE);
            }
            let take = rest.len().min(MAX_LINE - self.partial.len());
            self.partial.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut splitter = LineSplitter::new();
        let mut lines = Vec::new();
        for chunk in chunks {
            splitter.push(chunk, |line| lines.push(line.to_vec()));
        }
        splitter.finish(|line| lines.push(line.to_vec()));
        lines
    }

    /// What the splitter must produce for `input`, however it is cut.
    fn expected(input: &[u8]) -> Vec<Vec<u8>> {
        let mut lines = Vec::new();
        let mut parts: Vec<&[u8]> = input.split(|&b| b == b'\n').collect();
        let last = parts.pop().unwrap_or_default();
        let mut add = |line: &[u8]| {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() {
                lines.push(Vec::new());
            }
            lines.extend(line.chunks(MAX_LINE).map(<[u8]>::to_vec));
        };
        for part in parts {
            add(part);
        }
        if !last.is_empty() {
            add(last);
        }
        lines
    }

    #[test]
    fn lines_without_newline_and_carriage_return() {
        assert_eq!(
            split(&[b"one\ntwo\r\n\nthree"]),
            [&b"one"[..], b"two", b"", b"three"]
        );
        assert_eq!(split(&[b"a\r", b"\nb"]), [&b"a"[..], b"b"]);
        assert_eq!(split(&[b"a\rb\n"]), [&b"a\rb"[..]]);
        assert!(split(&[b""]).is_empty());
    }

    #[test]
    fn partial_lines_wait_for_their_end() {
        let mut splitter = LineSplitter::new();
        let mut lines = Vec::new();
        splitter.push(b"hel", |l| lines.push(l.to_vec()));
        assert!(lines.is_empty());
        assert!(!splitter.is_empty());
        splitter.push(b"lo\nwor", |l| lines.push(l.to_vec()));
        assert_eq!(lines, [b"hello"]);
        splitter.finish(|l| lines.push(l.to_vec()));
        assert_eq!(lines, [&b"hello"[..], b"wor"]);
        assert!(splitter.is_empty());
    }

    #[test]
    fn invalid_utf8_is_kept() {
        assert_eq!(split(&[b"\xff\xfe ok\n"]), [b"\xff\xfe ok"]);
    }

    #[test]
    fn long_lines_come_in_pieces_and_memory_stays_bounded() {
        let mut input = vec![b'x'; 3 * MAX_LINE + 5];
        input.push(b'\n');
        let lines = split(&[&input]);
        assert_eq!(
            lines.iter().map(Vec::len).collect::<Vec<_>>(),
            [MAX_LINE, MAX_LINE, MAX_LINE, 5]
        );
        let mut splitter = LineSplitter::new();
        for _ in 0..100 {
            splitter.push(&[b'y'; 1000], |_| {});
            assert!(splitter.partial.len() <= MAX_LINE + 1);
        }
    }

    #[test]
    fn exactly_max_line_is_one_line_however_its_crlf_arrives() {
        let mut input = vec![b'z'; MAX_LINE];
        input.extend_from_slice(b"\r\n");
        for cut in [MAX_LINE, MAX_LINE + 1, input.len()] {
            let lines = split(&[&input[..cut], &input[cut..]]);
            assert_eq!(lines.len(), 1, "cut at {cut}");
            assert_eq!(lines[0].len(), MAX_LINE);
        }
        // A `\r` inside the line after MAX_LINE bytes starts the next piece.
        input.insert(MAX_LINE + 1, b'q');
        let lines = split(&[&input[..MAX_LINE + 1], &input[MAX_LINE + 1..]]);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1], b"\rq");
    }

    #[test]
    fn output_does_not_depend_on_where_chunks_are_cut() {
        // A mix of short, empty, CRLF and over-long lines.
        let mut input = Vec::new();
        for i in 0..40usize {
            let len = match i % 6 {
                0 => 0,
                1 => i,
                2 => MAX_LINE - 1,
                3 => MAX_LINE,
                4 => MAX_LINE + 1,
                _ => 2 * MAX_LINE + i,
            };
            input.extend(std::iter::repeat_n(b'a' + (i % 26) as u8, len));
            if i % 3 == 0 {
                input.push(b'\r');
            }
            input.push(b'\n');
        }
        input.extend_from_slice(b"tail\r");
        let want = expected(&input);
        // A small deterministic generator of cut sizes (xorshift).
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        for round in 0..20 {
            let mut chunks = Vec::new();
            let mut rest = &input[..];
            while !rest.is_empty() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let limit = if round % 2 == 0 { 64 } else { 3 * MAX_LINE };
                let n = (state as usize % limit + 1).min(rest.len());
                chunks.push(&rest[..n]);
                rest = &rest[n..];
            }
            let got = split(&chunks);
            // Compared by hand: a failing assert_eq! would print megabytes.
            let first_difference = got.iter().zip(&want).position(|(a, b)| a != b);
            assert!(
                got.len() == want.len() && first_difference.is_none(),
                "round {round}: {} lines, want {}; first difference at line {first_difference:?}",
                got.len(),
                want.len()
            );
        }
    }
}
