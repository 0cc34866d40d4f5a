//! The services' stdout and stderr: one pipe each, drained by a small task per pipe that hands
//! each chunk to the event loop.
//!
//! A chunk's buffer is allocated only once the pipe is readable, so two hundred idle services
//! cost no buffer memory. The channel to the loop is bounded: a flooding service is read as fast
//! as the loop writes its lines to the log file, never faster, and never blocks on anything but
//! that (see the state directory's log file for why a full disk drops lines instead).

use std::io;
use std::os::fd::OwnedFd;

use nix::fcntl::OFlag;
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;

use super::Msg;
use crate::state::Stream;

/// The size of one read.
const CHUNK: usize = 16 * 1024;

/// The program's ends of its two pipes.
pub(crate) struct ChildEnds {
    pub(crate) stdout: OwnedFd,
    pub(crate) stderr: OwnedFd,
}

/// Creates the pipes of generation `generation` of service `service` and starts their readers.
pub(crate) fn open(
    service: usize,
    generation: u32,
    tx: &mpsc::Sender<Msg>,
) -> io::Result<ChildEnds> {
    let mut ends = Vec::with_capacity(2);
    for stream in [Stream::Out, Stream::Err] {
        let (ours, theirs) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
        nix::fcntl::fcntl(&ours, nix::fcntl::FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
        let fd = hangwatch_process::async_fd::register(ours)?;
        tokio::spawn(read(fd, service, generation, stream, tx.clone()));
        ends.push(theirs);
    }
    let stderr = ends
        .pop()
        .ok_or_else(|| io::Error::other("no stderr pipe"))?;
    let stdout = ends
        .pop()
        .ok_or_else(|| io::Error::other("no stdout pipe"))?;
    Ok(ChildEnds { stdout, stderr })
}

/// Reads until end of file; an empty chunk tells the loop the stream closed.
async fn read(
    fd: AsyncFd<OwnedFd>,
    service: usize,
    generation: u32,
    stream: Stream,
    tx: mpsc::Sender<Msg>,
) {
    loop {
        let Ok(mut guard) = fd.readable().await else {
            break;
        };
        let mut buf = vec![0u8; CHUNK];
        match guard.try_io(|fd| nix::unistd::read(fd.get_ref(), &mut buf).map_err(io::Error::from))
        {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => {
                buf.truncate(n);
                let msg = Msg::Output {
                    service,
                    generation,
                    stream,
                    bytes: buf,
                };
                if tx.send(msg).await.is_err() {
                    return;
                }
            }
            Err(_would_block) => {}
        }
    }
    let _ = tx
        .send(Msg::Output {
            service,
            generation,
            stream,
            bytes: Vec::new(),
        })
        .await;
}
