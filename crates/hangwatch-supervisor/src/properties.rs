//! Property tests of the notify datagram parser: every assignment a program may send is read
//! back as sent, and any bytes are messages or counted as ignored, one per line.
//!
//! Bounded for CI; the open-ended search is the fuzz target `notify` (`fuzz/`).

use std::time::Duration;

use proptest::prelude::*;

use crate::liveness::notify::{NotifyMessage, parse_datagram};

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 64,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// A message and the line that says it.
fn assignment() -> impl Strategy<Value = (NotifyMessage, String)> {
    prop_oneof![
        Just((NotifyMessage::Ready, "READY=1".to_owned())),
        Just((NotifyMessage::Reloading, "RELOADING=1".to_owned())),
        Just((NotifyMessage::Stopping, "STOPPING=1".to_owned())),
        Just((NotifyMessage::Watchdog, "WATCHDOG=1".to_owned())),
        Just((
            NotifyMessage::WatchdogTrigger,
            "WATCHDOG=trigger".to_owned()
        )),
        (1u64..).prop_map(|usec| (
            NotifyMessage::WatchdogUsec(Duration::from_micros(usec)),
            format!("WATCHDOG_USEC={usec}")
        )),
        any::<u64>().prop_map(|usec| (
            NotifyMessage::ExtendTimeoutUsec(Duration::from_micros(usec)),
            format!("EXTEND_TIMEOUT_USEC={usec}")
        )),
        "[^\n\0]*".prop_map(|text| (
            NotifyMessage::Status(text.clone()),
            format!("STATUS={text}")
        )),
        (1..=i32::MAX).prop_map(|pid| (NotifyMessage::MainPid(pid), format!("MAINPID={pid}"))),
        (0..=i32::MAX).prop_map(|errno| (NotifyMessage::Errno(errno), format!("ERRNO={errno}"))),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn assignments_round_trip(
        sent in prop::collection::vec(assignment(), 0..8),
        trailing_nul in any::<bool>(),
    ) {
        let mut datagram = sent.iter().map(|(_, line)| line.as_str()).collect::<Vec<_>>().join("\n");
        if trailing_nul {
            datagram.push('\0');
        }
        let (messages, ignored) = parse_datagram(datagram.as_bytes());
        let expected: Vec<NotifyMessage> = sent.into_iter().map(|(message, _)| message).collect();
        prop_assert_eq!(messages, expected);
        prop_assert_eq!(ignored, 0);
    }

    #[test]
    fn any_bytes_are_understood_or_ignored_line_by_line(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let (messages, ignored) = parse_datagram(&bytes);
        let body = bytes.strip_suffix(b"\0").unwrap_or(&bytes);
        let lines = body.split(|&b| b == b'\n').filter(|line| !line.is_empty()).count();
        prop_assert_eq!(messages.len() + ignored, lines);
    }

    #[test]
    fn numbers_out_of_range_are_ignored(value in "[+-]?[0-9]{0,25}") {
        for key in ["WATCHDOG_USEC", "EXTEND_TIMEOUT_USEC", "MAINPID", "ERRNO"] {
            let line = format!("{key}={value}");
            let (messages, ignored) = parse_datagram(line.as_bytes());
            let number = value.parse::<u64>().ok().filter(|_| value.bytes().all(|b| b.is_ascii_digit()));
            let fits = match key {
                "WATCHDOG_USEC" => number.is_some_and(|n| n > 0),
                "EXTEND_TIMEOUT_USEC" => number.is_some(),
                "MAINPID" => number.is_some_and(|n| n > 0 && n <= i32::MAX as u64),
                _ => number.is_some_and(|n| n <= i32::MAX as u64),
            };
            prop_assert_eq!((messages.len(), ignored), if fits { (1, 0) } else { (0, 1) }, "{}", line);
        }
    }
}
