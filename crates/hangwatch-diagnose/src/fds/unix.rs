//! Unix-domain sockets by inode, with their peers.
//!
//! The peer of a Unix socket (the inode at the other end of a `socketpair` or a connection) is
//! known only to the kernel's `sock_diag` netlink interface (`UNIX_DIAG_PEER`, what `ss -xp`
//! uses); `/proc/net/unix` lists a socket's path and state but not its peer. One dump request
//! returns every Unix socket of the caller's network namespace with its name, peer, pending
//! connections (`UNIX_DIAG_ICONS`, the sockets waiting in a listener's accept queue) and queue
//! lengths.
//!
//! The messages are encoded and decoded by `netlink-packet-sock-diag` (rust-netlink); the socket
//! is a plain `nix` datagram socket, since sending one request and reading its replies needs no
//! more than that, and keeps this crate free of `unsafe`. Where `sock_diag` is missing (a kernel
//! without `CONFIG_UNIX_DIAG`, or a process in another network namespace), `/proc/PID/net/unix`
//! still names each socket, without its peer.

use std::collections::HashMap;
use std::io;
use std::os::fd::AsRawFd;

use hangwatch_process::net_unix;

use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_sock_diag::SockDiagMessage;
use netlink_packet_sock_diag::unix::nlas::{Nla, UnixDiagName};
use netlink_packet_sock_diag::unix::{ShowFlags, StateFlags, UnixRequest};
use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, recv, sendto,
    setsockopt, socket, sockopt,
};
use nix::sys::time::TimeVal;

use super::UnixKind;

/// What the kernel says about one Unix socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct UnixSocket {
    pub kind: UnixKind,
    pub listening: bool,
    /// Connected (from the state), whether or not the peer is known.
    pub connected: bool,
    /// The name it is bound to: a path, or `@name` for an abstract address.
    pub path: Option<String>,
    /// The inode of the other end (`sock_diag` only).
    pub peer: Option<u64>,
    /// For a listener: the sockets waiting in its accept queue (`sock_diag` only).
    pub pending: Vec<u64>,
    /// Bytes not yet read; for a listener, connections not yet accepted (`sock_diag` only).
    pub recv_queue: Option<u32>,
    /// Bytes written and not yet read by the peer (`sock_diag` only).
    pub send_queue: Option<u32>,
}

// Kernel constants: socket types (`SOCK_*`) and the TCP-like states Unix sockets borrow.
const SOCK_STREAM: u8 = 1;
const SOCK_DGRAM: u8 = 2;
const SOCK_SEQPACKET: u8 = 5;
const TCP_ESTABLISHED: u8 = 1;
const TCP_LISTEN: u8 = 10;

/// A netlink dump is bounded by the kernel to 32 KiB per message; a larger buffer never
/// truncates.
const RECV_BUFFER: usize = 64 * 1024;

/// Every Unix socket of this process's network namespace, by inode.
pub(super) fn dump() -> io::Result<HashMap<u64, UnixSocket>> {
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkSockDiag,
    )?;
    // The kernel answers a dump at once; the timeout only guards against a reply that never
    // comes, since a diagnosis must not hang on its own tools.
    setsockopt(&fd, sockopt::ReceiveTimeout, &TimeVal::new(2, 0))?;

    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    header.sequence_number = 1;
    let mut request = NetlinkMessage::new(
        header,
        SockDiagMessage::UnixRequest(UnixRequest {
            state_flags: StateFlags::from_bits_retain(u32::MAX),
            inode: 0,
            show_flags: ShowFlags::NAME | ShowFlags::PEER | ShowFlags::ICONS | ShowFlags::RQLEN,
            cookie: [0xff; 8],
        })
        .into(),
    );
    request.finalize();
    let mut bytes = vec![0; request.buffer_len()];
    request.serialize(&mut bytes);
    sendto(
        fd.as_raw_fd(),
        &bytes,
        &NetlinkAddr::new(0, 0),
        MsgFlags::empty(),
    )?;

    let mut sockets = HashMap::new();
    let mut buf = vec![0u8; RECV_BUFFER];
    loop {
        let len = recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty())?;
        if len == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "sock_diag closed before the end of the dump",
            ));
        }
        let mut offset = 0;
        while offset < len {
            let message = NetlinkMessage::<SockDiagMessage>::deserialize(&buf[offset..len])
                .map_err(|err| io::Error::new(io::ErrorKind::InvalidData, err.to_string()))?;
            let message_len = message.header.length as usize;
            match message.payload {
                NetlinkPayload::Done(_) => return Ok(sockets),
                NetlinkPayload::Error(err) if err.code.is_some() => return Err(err.to_io()),
                NetlinkPayload::InnerMessage(SockDiagMessage::UnixResponse(response)) => {
                    let header = &response.header;
                    let mut socket = UnixSocket {
                        kind: unix_kind(header.kind),
                        listening: header.state == TCP_LISTEN,
                        connected: header.state == TCP_ESTABLISHED,
                        path: None,
                        peer: None,
                        pending: Vec::new(),
                        recv_queue: None,
                        send_queue: None,
                    };
                    for nla in &response.nlas {
                        match nla {
                            Nla::Name(name) => socket.path = Some(name_text(name)),
                            // A client whose connection waits in an accept queue has a
                            // peer without an inode yet (0); the listener's ICONS name it.
                            Nla::Peer(peer) if *peer != 0 => {
                                socket.peer = Some(u64::from(*peer));
                            }
                            Nla::PendingConnections(inodes) => {
                                socket.pending = inodes.iter().map(|i| u64::from(*i)).collect();
                            }
                            Nla::ReceiveQueueLength(read, write) => {
                                socket.recv_queue = Some(*read);
                                // For a listener the second number is the backlog's size,
                                // not a queue.
                                socket.send_queue = (!socket.listening).then_some(*write);
                            }
                            _ => {}
                        }
                    }
                    sockets.insert(u64::from(header.inode), socket);
                }
                _ => {}
            }
            if message_len == 0 {
                break;
            }
            // Messages are aligned to 4 bytes (NLMSG_ALIGN).
            offset += (message_len + 3) & !3;
        }
    }
}

fn unix_kind(kind: u8) -> UnixKind {
    match kind {
        SOCK_STREAM => UnixKind::Stream,
        SOCK_DGRAM => UnixKind::Dgram,
        SOCK_SEQPACKET => UnixKind::Seqpacket,
        _ => UnixKind::Unknown,
    }
}

/// A bound name as `ss` prints it: the path, or `@` and the abstract name.
fn name_text(name: &UnixDiagName) -> String {
    match name {
        UnixDiagName::Pathname(path) => path.to_string_lossy().into_owned(),
        UnixDiagName::Abstract(bytes) => format!("@{}", String::from_utf8_lossy(bytes)),
    }
}

/// Parses `/proc/PID/net/unix`: the sockets of that process's network namespace, without
/// peers.
///
/// `Num RefCount Protocol Flags Type St Inode Path`; `Flags` has `__SO_ACCEPTCON` (0x10000) on
/// a listener, `St` is 3 (`SS_CONNECTED`) on a connected socket, and the path, when bound,
/// runs to the end of the line.
pub(super) fn parse_proc_net_unix(text: &str) -> HashMap<u64, UnixSocket> {
    net_unix::parse_rows(text)
        .map(|row| {
            (
                row.inode,
                UnixSocket {
                    kind: unix_kind(row.kind),
                    listening: row.listening(),
                    connected: row.state == net_unix::SS_CONNECTED,
                    path: row.path.map(str::to_owned),
                    peer: None,
                    pending: Vec::new(),
                    recv_queue: None,
                    send_queue: None,
                },
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // In the format of Linux 6.x: a listener on a path, a connected stream socket, an unbound
    // datagram socket and an abstract seqpacket listener.
    const PROC_NET_UNIX: &str = "Num       RefCount Protocol Flags    Type St Inode Path
0000000000000000: 00000002 00000000 00010000 0001 01 23456 /run/app/control.sock
0000000000000000: 00000003 00000000 00000000 0001 03  1576
0000000000000000: 00000002 00000000 00000000 0002 01 123002
0000000000000000: 00000002 00000000 00010000 0005 01 99999 @hidden name
";

    #[test]
    fn proc_net_unix_names_paths_and_states() {
        let sockets = parse_proc_net_unix(PROC_NET_UNIX);
        assert_eq!(sockets.len(), 4);
        let listener = &sockets[&23456];
        assert!(listener.listening);
        assert_eq!(listener.kind, UnixKind::Stream);
        assert_eq!(listener.path.as_deref(), Some("/run/app/control.sock"));
        let connected = &sockets[&1576];
        assert!(connected.connected && !connected.listening);
        assert_eq!(connected.path, None);
        assert_eq!(connected.peer, None);
        assert_eq!(sockets[&123002].kind, UnixKind::Dgram);
        assert_eq!(sockets[&99999].path.as_deref(), Some("@hidden name"));
        assert_eq!(sockets[&99999].kind, UnixKind::Seqpacket);
    }

    #[test]
    fn sock_diag_sees_both_ends_of_a_socketpair() {
        use std::os::unix::fs::MetadataExt;
        let (a, b) = std::os::unix::net::UnixStream::pair().expect("socketpair");
        let inode = |s: &std::os::unix::net::UnixStream| {
            let fd = s.as_raw_fd();
            std::fs::metadata(format!("/proc/self/fd/{fd}"))
                .expect("stat")
                .ino()
        };
        let (ia, ib) = (inode(&a), inode(&b));
        let sockets = dump().expect("sock_diag dump");
        assert_eq!(sockets[&ia].peer, Some(ib));
        assert_eq!(sockets[&ib].peer, Some(ia));
        assert!(sockets[&ia].connected);
    }
}
