//! TCP and UDP sockets by inode, from `/proc/PID/net/{tcp,tcp6,udp,udp6}`.
//!
//! The tables are read through a process of the tree rather than `/proc/net`, because
//! `/proc/PID/net` shows the network namespace *that process* is in: a program in a container
//! or under `unshare -n` has sockets the supervisor's own namespace does not list.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::TcpState;

/// Transport protocol of an [`InetSocket`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Proto {
    Tcp,
    Udp,
}

/// One line of a `/proc/net/{tcp,udp}{,6}` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct InetSocket {
    pub proto: Proto,
    pub local: SocketAddr,
    /// `None` for a listening TCP socket or an unconnected UDP one (all zeros in the table).
    pub remote: Option<SocketAddr>,
    /// The kernel's `TCP_*` state number (UDP uses 1 for connected, 7 for unconnected).
    pub state: u8,
    /// Bytes sent but not acknowledged (TCP) or queued (UDP).
    pub tx_queue: u32,
    /// Bytes received but not read; for a listening socket, connections not yet accepted.
    pub rx_queue: u32,
    pub inode: u64,
}

/// Every TCP and UDP socket of one network namespace, by inode, and by endpoints so that the
/// other end of a connection on this machine can be found.
#[derive(Debug, Default)]
pub(super) struct InetTables {
    by_inode: HashMap<u64, InetSocket>,
    /// (protocol, local, remote) of every connected socket, addresses made comparable across
    /// the v4 and v6 tables.
    by_endpoints: HashMap<(u8, SocketAddr, SocketAddr), u64>,
    /// The addresses of the listening TCP sockets on each port.
    listeners: HashMap<u16, Vec<IpAddr>>,
    /// The unconnected UDP sockets on each port, with their addresses: the receivers that a
    /// connected UDP socket sends to.
    udp_bound: HashMap<u16, Vec<(IpAddr, u64)>>,
}

impl InetTables {
    /// Reads the four tables of `pid`'s network namespace; a table that cannot be read (no
    /// IPv6, the process gone) is left out.
    pub fn read(pid: i32) -> InetTables {
        let mut tables = InetTables::default();
        for (name, proto) in [
            ("tcp", Proto::Tcp),
            ("tcp6", Proto::Tcp),
            ("udp", Proto::Udp),
            ("udp6", Proto::Udp),
        ] {
            if let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{name}")) {
                tables.add(&text, proto);
            }
        }
        tables
    }

    /// Adds the lines of one table.
    pub fn add(&mut self, text: &str, proto: Proto) {
        for socket in text.lines().skip(1).filter_map(|l| parse_line(l, proto)) {
            if let Some(remote) = socket.remote {
                self.by_endpoints.insert(
                    (proto as u8, canonical(socket.local), canonical(remote)),
                    socket.inode,
                );
            }
            if proto == Proto::Tcp && socket.state == TCP_LISTEN {
                self.listeners
                    .entry(socket.local.port())
                    .or_default()
                    .push(canonical(socket.local).ip());
            }
            if proto == Proto::Udp && socket.remote.is_none() && socket.inode != 0 {
                self.udp_bound
                    .entry(socket.local.port())
                    .or_default()
                    .push((canonical(socket.local).ip(), socket.inode));
            }
            // Several sockets can show inode 0 (TIME_WAIT has no owner); only owned ones matter.
            if socket.inode != 0 {
                self.by_inode.insert(socket.inode, socket);
            }
        }
    }

    pub fn get(&self, inode: u64) -> Option<&InetSocket> {
        self.by_inode.get(&inode)
    }

    /// The inode of the other end of `socket` when both ends are on this machine, in this
    /// namespace: the socket connected back to it, or for UDP the unconnected socket bound to
    /// the address it sends to.
    pub fn peer_inode(&self, socket: &InetSocket) -> Option<u64> {
        let remote = canonical(socket.remote?);
        let key = (socket.proto as u8, remote, canonical(socket.local));
        let exact = self
            .by_endpoints
            .get(&key)
            .copied()
            .filter(|inode| *inode != 0 && *inode != socket.inode);
        if exact.is_some() || socket.proto != Proto::Udp {
            return exact;
        }
        self.udp_bound
            .get(&remote.port())?
            .iter()
            .find(|(ip, _)| *ip == remote.ip() || ip.is_unspecified())
            .map(|(_, inode)| *inode)
    }

    /// Whether a connected TCP socket was accepted from a listener here (rather than opened
    /// by `connect`): a listener holds its local port on its address or on the wildcard.
    pub fn accepted(&self, socket: &InetSocket) -> bool {
        if socket.proto != Proto::Tcp || socket.state == TCP_LISTEN {
            return false;
        }
        let local = canonical(socket.local).ip();
        self.listeners
            .get(&socket.local.port())
            .is_some_and(|ips| ips.iter().any(|ip| *ip == local || ip.is_unspecified()))
    }
}

const TCP_LISTEN: u8 = 10;

/// The state of a TCP socket, from the number in the table (`include/net/tcp_states.h`).
pub(super) fn tcp_state(state: u8) -> TcpState {
    match state {
        1 => TcpState::Established,
        2 => TcpState::SynSent,
        3 | 12 => TcpState::SynRecv,
        4 => TcpState::FinWait1,
        5 => TcpState::FinWait2,
        6 => TcpState::TimeWait,
        7 => TcpState::Close,
        8 => TcpState::CloseWait,
        9 => TcpState::LastAck,
        10 => TcpState::Listen,
        11 => TcpState::Closing,
        _ => TcpState::Unknown,
    }
}

/// Parses one line of `/proc/net/{tcp,udp}{,6}`:
/// `sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode …`.
pub(super) fn parse_line(line: &str, proto: Proto) -> Option<InetSocket> {
    let mut fields = line.split_whitespace();
    let _slot = fields.next()?;
    let local = parse_endpoint(fields.next()?)?;
    let remote = parse_endpoint(fields.next()?)?;
    let state = u8::from_str_radix(fields.next()?, 16).ok()?;
    let (tx, rx) = fields.next()?.split_once(':')?;
    let tx_queue = u32::from_str_radix(tx, 16).ok()?;
    let rx_queue = u32::from_str_radix(rx, 16).ok()?;
    // tr:tm->when, retrnsmt, uid, timeout, then inode.
    let inode = fields.nth(4)?.parse().ok()?;
    let remote = (!(remote.ip().is_unspecified() && remote.port() == 0)).then_some(remote);
    Some(InetSocket {
        proto,
        local,
        remote,
        state,
        tx_queue,
        rx_queue,
        inode,
    })
}

/// `0100007F:1F90` (IPv4) or 32 hex digits and a port (IPv6). The kernel prints each 32-bit
/// word of the address as a native-endian number, so the bytes come back with `to_ne_bytes`;
/// the port is a plain number.
fn parse_endpoint(text: &str) -> Option<SocketAddr> {
    let (addr, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let ip = match addr.len() {
        8 => IpAddr::V4(Ipv4Addr::from(
            u32::from_str_radix(addr, 16).ok()?.to_ne_bytes(),
        )),
        32 => {
            let mut bytes = [0u8; 16];
            for (i, chunk) in bytes.chunks_exact_mut(4).enumerate() {
                let word = u32::from_str_radix(addr.get(i * 8..i * 8 + 8)?, 16).ok()?;
                chunk.copy_from_slice(&word.to_ne_bytes());
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// An IPv4-mapped IPv6 address as IPv4, so that a v6 socket connected to a v4 one matches it.
fn canonical(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), addr.port()),
            None => addr,
        },
        IpAddr::V4(_) => addr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Lines as the kernel prints them on x86_64 (little-endian): a listener on 127.0.0.1:8080 with one connection
    // waiting to be accepted, and both ends of an established loopback connection.
    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000001 00:00000000 00000000     0        0 51234 1 0000000000000000 100 0 0 10 0
   1: 0100007F:A1B2 0100007F:1F90 01 00000010:00000000 01:00000014 00000000     0        0 51240 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:1F90 0100007F:A1B2 01 00000000:00000020 00:00000000 00000000     0        0 51241 1 0000000000000000 20 4 30 10 -1
";
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:0016 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 7001 1 0000000000000000 100 0 0 10 0
   1: 0000000000000000FFFF00000100007F:D431 0000000000000000FFFF00000100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 7002 1 0000000000000000 20 4 30 10 -1
";
    const UDP: &str = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  100: 00000000:14E9 00000000:0000 07 00000000:00000000 00:00000000 00000000   100        0 8001 2 0000000000000000 0
  101: 0100007F:C350 0100007F:14E9 01 00000000:00000000 00:00000000 00000000   100        0 8002 2 0000000000000000 0
";

    fn tables() -> InetTables {
        let mut t = InetTables::default();
        t.add(TCP, Proto::Tcp);
        t.add(TCP6, Proto::Tcp);
        t.add(UDP, Proto::Udp);
        t
    }

    #[test]
    fn endpoints_states_and_queues_are_decoded() {
        let t = tables();
        let listener = t.get(51234).expect("listener");
        assert_eq!(listener.local, "127.0.0.1:8080".parse().expect("addr"));
        assert_eq!(listener.remote, None);
        assert_eq!(tcp_state(listener.state), TcpState::Listen);
        assert_eq!(listener.rx_queue, 1);
        let client = t.get(51240).expect("client");
        assert_eq!(client.remote, Some("127.0.0.1:8080".parse().expect("addr")));
        assert_eq!(client.tx_queue, 16);
        let ssh = t.get(7001).expect("v6 listener");
        assert_eq!(ssh.local, "[::]:22".parse().expect("addr"));
        let mapped = t.get(7002).expect("v6 mapped");
        assert_eq!(
            mapped.local,
            "[::ffff:127.0.0.1]:54321".parse().expect("addr")
        );
        let udp = t.get(8001).expect("udp");
        assert_eq!(udp.local, "0.0.0.0:5353".parse().expect("addr"));
        assert_eq!(udp.remote, None);
    }

    #[test]
    fn the_other_end_of_a_local_connection_is_found() {
        let t = tables();
        let client = t.get(51240).expect("client").clone();
        let server = t.get(51241).expect("server").clone();
        assert_eq!(t.peer_inode(&client), Some(51241));
        assert_eq!(t.peer_inode(&server), Some(51240));
        assert!(!t.accepted(&client));
        assert!(t.accepted(&server));
        // The v4-mapped client has no server end in these tables.
        assert_eq!(t.peer_inode(&t.get(7002).expect("mapped").clone()), None);
        // A connected UDP socket sends to the one bound on the wildcard address.
        assert_eq!(
            t.peer_inode(&t.get(8002).expect("udp client").clone()),
            Some(8001)
        );
        assert_eq!(
            t.peer_inode(&t.get(8001).expect("udp server").clone()),
            None
        );
    }

    #[test]
    fn garbage_lines_are_skipped() {
        assert_eq!(parse_line("", Proto::Tcp), None);
        assert_eq!(parse_line("0: zz:1 00000000:0000 0A", Proto::Tcp), None);
    }
}
