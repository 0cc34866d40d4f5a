//! hangwatch's engine: the event loops that run programs, watch them and stop them.
//!
//! The binary stays thin (parse, call, print); everything that decides *when* to signal, wait or
//! give up lives here, so that tests can drive it in-process.
//!
//! - [`run`]: a guarded one-shot run (`hangwatch run`): one program, a deadline, a bounded stop of
//!   its whole tree, and a report.
//! - [`up`]: the supervisor of a config's services (`hangwatch up`), with its control socket.
//! - [`liveness`]: what tells a working program from a stuck one (notify datagrams, status
//!   files, output), shared by both.
//! - [`incident`]: the bounded diagnosis before a stop, shared by both.
//! - [`guard`]: the guardian that kills what a SIGKILLed hangwatch leaves, for both.
//! - [`probe`]: TCP and HTTP checks.
//! - [`state`]: the supervisor's state directory (event log, logs, instance record, console).
//!
//! # Two fronts, one set of parts
//!
//! `run` and `up` are two loops built from the same parts: one meaning of every notify
//! message ([`liveness::notified`]), one ancestry walk for a datagram's sender, one stall
//! [`liveness::detector::Detector`], one bounded diagnosis ([`incident`]), one stop ladder
//! ([`hangwatch_process::TreeStop`]) and one stop-cause type in `hangwatch-protocol`, used by
//! the run's report and the supervisor's events alike.
//!
//! `run` is not "one service of `up`": what it owes its caller differs in kind. It is the
//! program's stand-in for the caller: it passes the program's output through unchanged
//! (possibly on a pseudo-terminal, with the terminal's foreground group), forwards every signal
//! the caller sends to the program, never restarts, and ends with the program's own exit code
//! or a documented one (124, the stall code) and a report. `up` owns its programs: it reads
//! their output into logs, restarts them by policy, orders them by dependency and answers a
//! control socket. Forcing both into one loop would make every one of those a mode flag in
//! the service state machine; two small loops over the shared parts keep each one's rules in
//! one place, and the parts keep them from drifting apart.
#![forbid(unsafe_code)]
// The module docs of `up` and `http` are a map of their private parts for whoever works on them
// (`cargo doc --document-private-items`, as `.ci/run` builds them); the links are meant.
#![allow(rustdoc::private_intra_doc_links)]

mod alert;
pub mod duration;
pub mod guard;
pub mod http;
pub mod incident;
pub mod liveness;
mod oom;
pub mod probe;
#[cfg(test)]
mod properties;
pub mod run;
pub mod state;
mod summary;
mod survivors;
pub mod textfile;
pub mod up;
