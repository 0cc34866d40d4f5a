use std::io::{self, Write};
use std::path::Path;
use std::time::SystemTime;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Out,
    Err,
}

#[derive(Debug)]
pub struct LogFile {
    file: std::fs::File,
}

impl LogFile {
    pub fn open(dir: &Path, service: &str, _max_size: u64, _keep: u32) -> io::Result<LogFile> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(format!("{service}.log")))?;
        Ok(LogFile { file })
    }
    pub fn write_line(&mut self, stream: Stream, line: &[u8], at: SystemTime) {
        let mut buf = format!(
            "{} {} | ",
            humantime::format_rfc3339_millis(at),
            if stream == Stream::Out { "out" } else { "err" }
        )
        .into_bytes();
        buf.extend_from_slice(line);
        buf.push(b'\n');
        let _ = self.file.write_all(&buf);
    }
    pub fn take_dropped(&mut self) -> Option<(u64, String)> {
        None
    }
}

#[derive(Debug, Default)]
pub struct LineSplitter {
    partial: Vec<u8>,
}

impl LineSplitter {
    pub fn new() -> LineSplitter {
        LineSplitter::default()
    }
    pub fn push(&mut self, bytes: &[u8], mut emit: impl FnMut(&[u8])) {
        for b in bytes {
            if *b == b'\n' {
                emit(&self.partial);
                self.partial.clear();
            } else {
                self.partial.push(*b);
            }
        }
    }
    pub fn finish(&mut self, mut emit: impl FnMut(&[u8])) {
        if !self.partial.is_empty() {
            emit(&self.partial);
            self.partial.clear();
        }
    }
}
