//! Read-only inspection of live processes: what a stalled program looks like from outside.
//!
//! This crate never changes a process. Today it takes a snapshot of every process of a tree
//! with each thread's state and kernel wait channel, straight from `/proc`, without ptrace: the
//! evidence a stall report carries. [`fds`] names every open descriptor of a tree and what is
//! at its other end (the writer of a pipe, the peer of a socket). Blocked system calls and
//! Python stacks are to come here too.
//!
//! A process or thread may exit between any two reads; it is then left out, never an error.
#![forbid(unsafe_code)]

pub mod fds;
pub mod threads;

pub use fds::{FdReport, FdTarget, OpenFd, open_fds};
pub use threads::snapshot_tree;
