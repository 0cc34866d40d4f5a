//! Read-only inspection of live processes: what a stalled program is waiting on.
//!
//! [`diagnose()`] reads a process tree twice, a sampling window apart, and reports every thread's
//! state, wait channel, decoded system call, CPU use and context switches, the open file
//! descriptors with what is at their other end, Python stacks of CPython processes, the owner
//! of a glibc mutex a thread waits for, and a verdict naming what the program waits on. It
//! never pauses or changes the target: `/proc` and `process_vm_readv` read a running process.
//!
//! A process or thread may exit between any two reads; it is then left out, never an error.
//! What the kernel does not allow to read is listed in [`Diagnosis::missing`] with the reason.
#![forbid(unsafe_code)]

pub mod diagnose;
pub mod fds;
pub mod incident;
pub mod locks;
pub mod memory;
pub mod model;
pub mod pressure;
pub mod pylocks;
pub mod python;
pub mod render;
pub mod sample;
pub mod syscall;
pub mod threads;
pub mod verdict;

use std::collections::HashMap;

pub use diagnose::{DiagnoseError, Options, diagnose};
pub use fds::{FdReport, FdTarget, OpenFd, open_fds};
pub use incident::{IncidentFiles, write_incident};
pub use model::{Diagnosis, Finding, FindingKind};
pub use render::render;
pub use threads::snapshot_tree;

use model::PythonThread;

/// Python stacks of `pid` keyed by OS thread ID, with the interpreter version; `None` for a
/// process that is not CPython (or whose stacks could not be read: then `missing` says why).
///
/// With `locals`, each frame also lists its local variables' object addresses (the evidence
/// that two frames name the same lock).
fn python_threads(
    pid: i32,
    locals: bool,
    missing: &mut Vec<String>,
) -> Option<(String, HashMap<i32, PythonThread>)> {
    use python::PythonError;
    if !python::is_python(pid) {
        return None;
    }
    let read = if locals {
        python::dump_with_locals
    } else {
        python::dump
    };
    let dump = match read(pid) {
        Ok(dump) => dump,
        Err(PythonError::NotPython | PythonError::Gone) => return None,
        Err(err) => {
            missing.push(format!("Python stacks of pid {pid}: {err}"));
            return None;
        }
    };
    let mut sources = SourceLines::new(pid);
    let mut threads = HashMap::new();
    for thread in dump.threads {
        let Some(tid) = thread.os_tid else {
            missing.push(format!(
                "Python thread {:#x} ({}) of pid {pid} could not be matched to a kernel thread \
                 (it was running); its stack: {}",
                thread.thread_id,
                thread.name.as_deref().unwrap_or("unnamed"),
                thread
                    .frames
                    .iter()
                    .map(|f| format!("{} {}:{}", f.function, f.file, f.line))
                    .collect::<Vec<_>>()
                    .join(" <- ")
            ));
            continue;
        };
        let frames = thread
            .frames
            .into_iter()
            .map(|frame| model::PythonFrame {
                code: sources.line(&frame.file, frame.line),
                with_blocks: sources.enclosing_withs(&frame.file, frame.line),
                function: frame.function,
                file: frame.file,
                line: frame.line,
                locals: frame.locals,
            })
            .collect();
        threads.insert(
            tid,
            PythonThread {
                name: thread.name,
                ident: Some(thread.thread_id),
                holds_gil: thread.holds_gil,
                active: thread.active,
                frames,
            },
        );
    }
    Some((dump.version, threads))
}

/// Source lines of a process's Python files, each file read once, relative paths resolved
/// against the process's working directory.
struct SourceLines {
    cwd: std::path::PathBuf,
    files: HashMap<String, Option<Vec<String>>>,
}

impl SourceLines {
    /// Files larger than this are not read for one line.
    const MAX_BYTES: u64 = 4 << 20;

    fn new(pid: i32) -> SourceLines {
        SourceLines {
            cwd: std::path::PathBuf::from(format!("/proc/{pid}/cwd")),
            files: HashMap::new(),
        }
    }

    /// The lines of `file`, as written (indentation kept).
    fn lines(&mut self, file: &str) -> Option<&[String]> {
        let cwd = &self.cwd;
        self.files
            .entry(file.to_owned())
            .or_insert_with(|| {
                let path = cwd.join(file);
                let size = std::fs::metadata(&path).ok()?.len();
                if size > Self::MAX_BYTES {
                    return None;
                }
                let text = std::fs::read_to_string(&path).ok()?;
                Some(text.lines().map(str::to_owned).collect())
            })
            .as_deref()
    }

    fn line(&mut self, file: &str, line: i32) -> Option<String> {
        let text = self
            .lines(file)?
            .get(usize::try_from(line).ok()?.checked_sub(1)?)?
            .trim();
        (!text.is_empty()).then(|| text.to_owned())
    }

    /// The `with` statements enclosing `line` of `file`; see [`pylocks::enclosing_withs`].
    fn enclosing_withs(&mut self, file: &str, line: i32) -> Vec<pylocks::WithBlock> {
        self.lines(file)
            .map(|lines| pylocks::enclosing_withs(lines, line))
            .unwrap_or_default()
    }
}
