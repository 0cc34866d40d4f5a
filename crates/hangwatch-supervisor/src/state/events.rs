use std::io::{self, Write};
use std::path::Path;
use std::sync::Mutex;
use std::time::SystemTime;

use hangwatch_protocol::event::{Event, EventRecord};

#[derive(Debug)]
pub struct EventLog {
    file: Mutex<std::fs::File>,
}

impl EventLog {
    pub fn open(path: &Path) -> io::Result<EventLog> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(EventLog {
            file: Mutex::new(file),
        })
    }
    pub fn append(&self, record: &EventRecord) {
        if let Ok(mut line) = serde_json::to_vec(record) {
            line.push(b'\n');
            if let Ok(mut file) = self.file.lock() {
                let _ = file.write_all(&line);
            }
        }
    }
    pub fn close(self) {}
}

pub fn record(service: Option<&str>, event: Event) -> EventRecord {
    EventRecord {
        at: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
        service: service.map(str::to_owned),
        event,
    }
}
