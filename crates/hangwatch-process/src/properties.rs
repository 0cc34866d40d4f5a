//! Property tests of the `/proc` parsers of this crate: `stat`, `cmdline` and `net/unix`.
//!
//! Bounded for CI; the open-ended search is the fuzz targets `proc_stat` and `proc_net`
//! (`fuzz/`).

use proptest::prelude::*;

use crate::net_unix::parse_rows;
use crate::stat::{Stat, format_cmdline, parse_stat};

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 64,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// A `stat` line as the kernel prints it (52 fields), with the given values.
fn stat_line(stat: &Stat, utime: u64, stime: u64, vsize: u64) -> String {
    let mut fields = vec![
        stat.state.to_string(),
        stat.ppid.to_string(),
        stat.pgrp.to_string(),
        stat.session.to_string(),
    ];
    // Fields 7 to 21, with utime and stime at 14 and 15.
    fields.extend((7..=13).map(|n| n.to_string()));
    fields.push(utime.to_string());
    fields.push(stime.to_string());
    fields.extend((16..=21).map(|n| n.to_string()));
    fields.push(stat.start_time.to_string());
    fields.push(vsize.to_string());
    fields.push(stat.rss_pages.to_string());
    fields.extend((25..=52).map(|n| n.to_string()));
    format!("{} ({}) {}\n", stat.pid, stat.comm, fields.join(" "))
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn stat_lines_round_trip_whatever_the_name(
        pid in 1..=i32::MAX,
        // A name is at most 15 bytes and may hold spaces and parentheses; not a line break.
        comm in "[^\n]{0,15}",
        state in prop::sample::select(&['R', 'S', 'D', 'Z', 'T', 't', 'X', 'I'][..]),
        ppid in 0..=i32::MAX,
        pgrp in 0..=i32::MAX,
        session in 0..=i32::MAX,
        start_time in any::<u64>(),
        utime in any::<u64>(),
        stime in any::<u64>(),
        vsize in any::<u64>(),
        rss_pages in any::<u64>(),
    ) {
        let cpu_ticks = utime.saturating_add(stime);
        let stat = Stat { pid, comm, state, ppid, pgrp, session, start_time, rss_pages, cpu_ticks };
        let line = stat_line(&stat, utime, stime, vsize);
        prop_assert_eq!(parse_stat(&line), Some(stat), "{}", line);
    }

    #[test]
    fn any_text_is_a_stat_or_none(text in any::<String>()) {
        if let Some(stat) = parse_stat(&text) {
            let quoted = format!("({})", stat.comm);
            prop_assert!(text.contains(&quoted));
        }
    }

    #[test]
    fn a_command_line_is_its_arguments_joined(args in prop::collection::vec("[^\0]{1,12}", 0..6)) {
        let mut bytes = Vec::new();
        for arg in &args {
            bytes.extend_from_slice(arg.as_bytes());
            bytes.push(0);
        }
        let expected = (!args.is_empty()).then(|| args.join(" "));
        prop_assert_eq!(format_cmdline(&bytes), expected);
    }

    #[test]
    fn unix_rows_round_trip(
        rows in prop::collection::vec(
            (any::<u32>(), 1u8..6, 0u8..5, any::<u64>(), prop::option::of("[/@][ -~]{0,30}")),
            0..6,
        ),
    ) {
        let mut text = String::from("Num       RefCount Protocol Flags    Type St Inode Path\n");
        for (flags, kind, state, inode, path) in &rows {
            text.push_str(&format!(
                "0000000000000000: 00000002 00000000 {flags:08X} {kind:04X} {state:02X} {inode:5}"
            ));
            if let Some(path) = path {
                text.push(' ');
                text.push_str(path);
            }
            text.push('\n');
        }
        let parsed: Vec<_> = parse_rows(&text)
            .map(|row| (row.flags, row.kind, row.state, row.inode, row.path.map(str::to_owned)))
            .collect();
        prop_assert_eq!(parsed, rows);
    }

    #[test]
    fn any_text_gives_at_most_one_row_per_line(text in any::<String>()) {
        prop_assert!(parse_rows(&text).count() <= text.lines().count().saturating_sub(1));
    }
}
