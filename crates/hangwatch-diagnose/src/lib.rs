//! Read-only inspection of live processes: what a stalled program looks like from outside.
//!
//! This crate never changes a process. Today it takes a snapshot of every process of a tree
//! with each thread's state and kernel wait channel, straight from `/proc`, without ptrace: the
//! evidence a stall report carries. Blocked system calls, file-descriptor peers and Python
//! stacks are to come here too.
//!
//! A process or thread may exit between any two reads; it is then left out, never an error.
#![forbid(unsafe_code)]

pub mod threads;

pub use threads::snapshot_tree;
