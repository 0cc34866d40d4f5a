//! Stubs for platforms without pidfds, subreapers and `/proc`: everything reports
//! `Unsupported`, so the workspace builds elsewhere and fails clearly at run time.

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::process::Command;

fn unsupported() -> io::Error {
    io::Error::new(io::ErrorKind::Unsupported, "hangwatch supports only Linux")
}

pub(crate) fn pidfd_open(_pid: i32) -> io::Result<OwnedFd> {
    Err(unsupported())
}

pub(crate) fn pidfd_send_signal(_fd: BorrowedFd<'_>, _signal: i32) -> io::Result<()> {
    Err(unsupported())
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct ChildSetup {
    pub foreground_tty: bool,
    pub die_with_parent: bool,
    pub parent_pid: i32,
    pub open_files: Option<(u64, u64)>,
}

pub(crate) fn open_files_limit() -> io::Result<(u64, u64)> {
    Err(unsupported())
}

pub(crate) fn set_open_files_limit(_soft: u64, _hard: u64) -> io::Result<()> {
    Err(unsupported())
}

#[derive(Debug)]
pub(crate) struct ChildCredentials {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
}

pub(crate) struct ChildEnv;

impl ChildEnv {
    pub(crate) fn new(
        _vars: impl IntoIterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
        _pid_var: Option<&str>,
    ) -> ChildEnv {
        ChildEnv
    }
}

pub(crate) fn configure_child(
    _command: &mut Command,
    _setup: ChildSetup,
    _env: Option<ChildEnv>,
    _credentials: Option<ChildCredentials>,
) {
}

pub(crate) fn give_terminal(_fd: i32, _pgrp: i32) -> io::Result<()> {
    Err(unsupported())
}

pub(crate) fn terminal_foreground(_fd: i32) -> Option<i32> {
    None
}

pub(crate) fn become_subreaper() -> io::Result<()> {
    Err(unsupported())
}

#[derive(Debug)]
pub(crate) struct EpollFd(std::os::fd::OwnedFd);

impl std::os::fd::AsRawFd for EpollFd {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.0.as_raw_fd()
    }
}

pub(crate) fn async_epoll() -> io::Result<tokio::io::unix::AsyncFd<EpollFd>> {
    Err(unsupported())
}

pub(crate) fn async_owned_fd(_fd: OwnedFd) -> io::Result<tokio::io::unix::AsyncFd<OwnedFd>> {
    Err(unsupported())
}

pub(crate) fn remove_sysv_shm(_id: i32) -> io::Result<()> {
    Err(unsupported())
}

#[derive(Debug)]
pub(crate) struct QueriedMapping {
    pub end: u64,
    pub dev_major: u32,
    pub dev_minor: u32,
    pub inode: u64,
    pub name_len: usize,
}

pub(crate) fn procmap_query(
    _maps: BorrowedFd<'_>,
    _address: u64,
    _name: &mut [u8],
) -> io::Result<Option<QueriedMapping>> {
    Err(unsupported())
}

pub(crate) const GUARDIAN_NEEDLE_MAX: usize = 256;

pub(crate) struct GuardianSetup {
    pub watched: OwnedFd,
    pub channel: OwnedFd,
    pub null: OwnedFd,
    pub needle: [u8; GUARDIAN_NEEDLE_MAX],
    pub needle_len: usize,
    pub spared_group: i32,
}

pub(crate) fn spawn_guardian(_setup: GuardianSetup) -> io::Result<i32> {
    Err(unsupported())
}

pub(crate) fn guardian_settle(_intermediate: i32) -> io::Result<()> {
    Err(unsupported())
}

pub(crate) fn guardian_disarm(
    _channel: BorrowedFd<'_>,
    _handed: &[BorrowedFd<'_>],
) -> io::Result<()> {
    Err(unsupported())
}
