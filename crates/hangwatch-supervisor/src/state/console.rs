use std::io::Write;
use std::time::Duration;

use super::logfile::Stream;

#[derive(Debug)]
pub struct Console {
    width: usize,
}

impl Console {
    pub fn new(_color: bool, name_width: usize) -> Console {
        Console { width: name_width }
    }
    pub fn line(&self, service: &str, _stream: Stream, line: &[u8]) {
        let mut out = std::io::stdout().lock();
        let _ = write!(out, "{service:<w$} | ", w = self.width);
        let _ = out.write_all(line);
        let _ = out.write_all(b"\n");
    }
    pub fn event(&self, text: &str) {
        let _ = writeln!(
            std::io::stdout().lock(),
            "{:<w$} | {text}",
            "hangwatch",
            w = self.width
        );
    }
    pub fn flush(&self, _limit: Duration) {
        let _ = std::io::stdout().flush();
    }
}
