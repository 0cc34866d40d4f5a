//! Property tests of the diagnosis's `/proc` parsers: `fdinfo`, descriptor links, the
//! `/proc/net` tables, `status` and `syscall`. Each is written the way the kernel prints it and
//! read back; any text is read without a panic.
//!
//! Bounded for CI; the open-ended search is the fuzz targets `proc_*` (`fuzz/`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use proptest::prelude::*;

use super::inet::{InetSocket, Proto, parse_line};
use super::procfs::{FdInfo, Link, parse_fdinfo, parse_link};
use crate::sample::parse_switches;
use crate::syscall::{SyscallLine, parse_line as parse_syscall};

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 64,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// An address as `/proc/net/{tcp,udp}{,6}` prints it: each 32-bit word native-endian in hex.
fn endpoint(addr: SocketAddr) -> String {
    let words: Vec<[u8; 4]> = match addr.ip() {
        IpAddr::V4(ip) => vec![ip.octets()],
        IpAddr::V6(ip) => ip
            .octets()
            .chunks_exact(4)
            .map(|c| [c[0], c[1], c[2], c[3]])
            .collect(),
    };
    let hex: String = words
        .into_iter()
        .map(|word| format!("{:08X}", u32::from_ne_bytes(word)))
        .collect();
    format!("{hex}:{:04X}", addr.port())
}

fn socket_addr(v6: bool) -> impl Strategy<Value = SocketAddr> {
    if v6 {
        (any::<u128>(), any::<u16>())
            .prop_map(|(ip, port)| SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port))
            .boxed()
    } else {
        (any::<u32>(), any::<u16>())
            .prop_map(|(ip, port)| SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port))
            .boxed()
    }
}

fn inet_socket() -> impl Strategy<Value = InetSocket> {
    any::<bool>().prop_flat_map(|v6| {
        (
            prop::sample::select(&[Proto::Tcp, Proto::Udp][..]),
            socket_addr(v6),
            socket_addr(v6),
            any::<u8>(),
            any::<u32>(),
            any::<u32>(),
            any::<u64>(),
        )
            .prop_map(|(proto, local, remote, state, tx_queue, rx_queue, inode)| {
                let remote =
                    (!(remote.ip().is_unspecified() && remote.port() == 0)).then_some(remote);
                InetSocket {
                    proto,
                    local,
                    remote,
                    state,
                    tx_queue,
                    rx_queue,
                    inode,
                }
            })
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn fdinfo_round_trips(
        pos in any::<u64>(),
        flags in prop::option::of(any::<u32>()),
        targets in prop::collection::vec(any::<i32>(), 0..4),
        pid in prop::option::of(any::<i32>()),
    ) {
        let mut text = format!("pos:\t{pos}\n");
        if let Some(flags) = flags {
            text.push_str(&format!("flags:\t0{flags:o}\n"));
        }
        text.push_str("mnt_id:\t15\nino:\t1057\n");
        for fd in &targets {
            text.push_str(&format!("tfd: {fd:8} events:       19 data:  {fd:16x}  pos:0 ino:61a sdev:8\n"));
        }
        if let Some(pid) = pid {
            text.push_str(&format!("Pid:\t{pid}\nNSpid:\t{pid}\n"));
        }
        let expected = FdInfo { flags, epoll_targets: targets, pid };
        prop_assert_eq!(parse_fdinfo(&text), expected);
    }

    #[test]
    fn links_round_trip(inode in any::<u64>(), path in "/[^\0\n]{0,40}", kind in "[a-z_]{1,12}") {
        prop_assert_eq!(parse_link(&format!("pipe:[{inode}]")), Link::Pipe(inode));
        prop_assert_eq!(parse_link(&format!("socket:[{inode}]")), Link::Socket(inode));
        prop_assert_eq!(parse_link(&format!("anon_inode:[{kind}]")), Link::Anon(kind.clone()));
        prop_assert_eq!(parse_link(&format!("anon_inode:{kind}")), Link::Anon(kind));
        let deleted = path.ends_with(" (deleted)");
        if !deleted {
            prop_assert_eq!(
                parse_link(&format!("{path} (deleted)")),
                Link::Path { path: path.clone(), deleted: true }
            );
            prop_assert_eq!(parse_link(&path), Link::Path { path, deleted: false });
        }
    }

    #[test]
    fn inet_lines_round_trip(socket in inet_socket(), slot in 0u32..100_000) {
        let remote = socket.remote.unwrap_or(match socket.local {
            SocketAddr::V4(_) => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
            SocketAddr::V6(_) => SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
        });
        let line = format!(
            "{slot:4}: {} {} {:02X} {:08X}:{:08X} 00:00000000 00000000  1000        0 {} 1 0000000000000000 20 4 30 10 -1",
            endpoint(socket.local),
            endpoint(remote),
            socket.state,
            socket.tx_queue,
            socket.rx_queue,
            socket.inode,
        );
        prop_assert_eq!(parse_line(&line, socket.proto), Some(socket), "{}", line);
    }

    #[test]
    fn any_text_reads_without_panic(text in any::<String>()) {
        let _ = parse_fdinfo(&text);
        let _ = parse_link(&text);
        let _ = parse_line(&text, Proto::Tcp);
        let _ = super::parsers::net_inet(&text, true);
        let _ = super::parsers::net_unix(&text);
        let _ = parse_switches(&text);
        let _ = parse_syscall(&text);
        let _ = crate::python::parsers::maps(&text);
        let _ = crate::python::parsers::status(&text);
        let _ = crate::python::parsers::syscall_stack_pointer(&text);
    }

    #[test]
    fn context_switches_add_up_or_are_none(voluntary in any::<u64>(), involuntary in any::<u64>()) {
        let status = format!(
            "Name:\tpython3\nThreads:\t3\nvoluntary_ctxt_switches:\t{voluntary}\nnonvoluntary_ctxt_switches:\t{involuntary}\n"
        );
        prop_assert_eq!(parse_switches(&status), voluntary.checked_add(involuntary));
    }

    #[test]
    fn syscall_lines_round_trip(nr in 0i64..1000, args in any::<[u64; 6]>(), sp in any::<u64>(), pc in any::<u64>()) {
        let line = format!(
            "{nr} {} {sp:#x} {pc:#x}\n",
            args.iter().map(|a| format!("{a:#x}")).collect::<Vec<_>>().join(" ")
        );
        prop_assert_eq!(parse_syscall(&line), Some(SyscallLine::In { nr, args }));
        prop_assert_eq!(crate::python::parsers::syscall_stack_pointer(&line), Some(sp));
    }
}
