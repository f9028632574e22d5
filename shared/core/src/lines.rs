//! Lines out of a byte stream that comes from outside (a build's, an app's, a replica's
//! output): a line's length is capped while reading, and bytes that are not UTF-8 are
//! replaced, never a reason to stop reading.

/// The longest line kept of a build's or an app's output; the rest of a longer one is
/// dropped, and the line says so.
pub const MAX_LINE_BYTES: usize = 64 << 10;

/// Splits a byte stream into lines, keeping an unfinished last line for later (at most
/// [`MAX_LINE_BYTES`] of it: memory never holds more of one line).
#[derive(Default)]
pub struct LineSplitter {
    pending: Vec<u8>,
    /// The current line was cut: its rest, up to the next newline, is dropped.
    cutting: bool,
}

fn text(line: &[u8]) -> String {
    String::from_utf8_lossy(line)
        .trim_end_matches('\r')
        .to_owned()
}

impl LineSplitter {
    /// The lines `chunk` completes.
    pub fn push(&mut self, mut chunk: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        while !chunk.is_empty() {
            let newline = chunk.iter().position(|b| *b == b'\n');
            let (part, rest) = match newline {
                Some(pos) => (&chunk[..pos], &chunk[pos + 1..]),
                None => (chunk, &[][..]),
            };
            if !self.cutting {
                let room = MAX_LINE_BYTES.saturating_sub(self.pending.len());
                self.pending
                    .extend_from_slice(&part[..part.len().min(room)]);
                if part.len() > room {
                    let mut line = text(&std::mem::take(&mut self.pending));
                    line.push_str(&format!(" [line cut at {} kB]", MAX_LINE_BYTES >> 10));
                    out.push(line);
                    self.cutting = true;
                }
            }
            if newline.is_some() {
                if self.cutting {
                    self.cutting = false;
                } else {
                    out.push(text(&std::mem::take(&mut self.pending)));
                }
            }
            chunk = rest;
        }
        out
    }

    /// The unfinished last line, if any (the stream ended).
    pub fn finish(&mut self) -> Option<String> {
        self.cutting = false;
        if self.pending.is_empty() {
            None
        } else {
            let rest = std::mem::take(&mut self.pending);
            Some(String::from_utf8_lossy(&rest).into_owned())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_across_chunks() {
        let mut s = LineSplitter::default();
        assert_eq!(s.push(b"one\ntw"), vec!["one"]);
        assert_eq!(s.push(b"o\r\nthree"), vec!["two"]);
        assert_eq!(s.finish().as_deref(), Some("three"));
        assert_eq!(s.finish(), None);
    }

    #[test]
    fn a_line_longer_than_the_cap_is_cut_and_says_so() {
        let mut s = LineSplitter::default();
        let long = vec![b'x'; MAX_LINE_BYTES + 10];
        let mut lines = s.push(b"before\n");
        for piece in long.chunks(1000) {
            lines.extend(s.push(piece));
        }
        assert!(s.pending.len() <= MAX_LINE_BYTES);
        lines.extend(s.push(b"yyy\nafter\n"));
        assert_eq!(
            lines.len(),
            3,
            "{:?}",
            lines.iter().map(|l| l.len()).collect::<Vec<_>>()
        );
        assert_eq!(lines[0], "before");
        assert!(lines[1].starts_with("xxx") && lines[1].ends_with("[line cut at 64 kB]"));
        assert_eq!(
            lines[1].len(),
            MAX_LINE_BYTES + " [line cut at 64 kB]".len()
        );
        assert_eq!(lines[2], "after");
    }
}
