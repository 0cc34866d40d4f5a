//! Read-only inspection of live processes: what a stalled program looks like from outside.
//!
//! This crate never changes a process. It takes a snapshot of every process of a tree with each
//! thread's state and kernel wait channel, straight from `/proc`, without ptrace: the evidence a
//! stall report carries ([`threads`]). For a CPython process it reads the Python stack of every
//! thread from outside, without pausing it ([`python`]). Blocked system calls and
//! file-descriptor peers are to come here too.
//!
//! A process or thread may exit between any two reads; it is then left out, never an error.
#![forbid(unsafe_code)]

pub mod python;
pub mod threads;

pub use threads::snapshot_tree;
