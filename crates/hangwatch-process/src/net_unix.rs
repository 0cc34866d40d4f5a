//! Rows of `/proc/net/unix` (or `/proc/PID/net/unix`): every Unix socket of a network
//! namespace, without peers. Shared by the diagnosis (what a socket descriptor is) and the leak
//! audit (which socket files a tree served).

/// `__SO_ACCEPTCON` in `Flags`: the socket listens.
pub const ACCEPTCON: u32 = 0x1_0000;
/// `SS_UNCONNECTED` in `St`.
pub const SS_UNCONNECTED: u8 = 1;
/// `SS_CONNECTED` in `St`.
pub const SS_CONNECTED: u8 = 3;

/// One row: `Num RefCount Protocol Flags Type St Inode [Path]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnixRow<'a> {
    /// `Flags` (hex).
    pub flags: u32,
    /// `Type`: `SOCK_STREAM`, `SOCK_DGRAM`, `SOCK_SEQPACKET`.
    pub kind: u8,
    /// `St`: the socket state.
    pub state: u8,
    /// The socket's inode (`socket:[INODE]` in `/proc/PID/fd`).
    pub inode: u64,
    /// The bound name, when bound: a path, or `@` and an abstract name. It runs to the end of
    /// the line, spaces included.
    pub path: Option<&'a str>,
}

impl UnixRow<'_> {
    /// Whether the socket listens.
    #[must_use]
    pub fn listening(&self) -> bool {
        self.flags & ACCEPTCON != 0
    }
}

/// The rows of the file's text; malformed lines are skipped.
pub fn parse_rows(text: &str) -> impl Iterator<Item = UnixRow<'_>> {
    text.lines().skip(1).filter_map(parse_row)
}

fn parse_row(line: &str) -> Option<UnixRow<'_>> {
    let mut rest = line;
    let mut fields = [""; 7];
    for field in &mut fields {
        rest = rest.trim_start();
        let end = rest.find(' ').unwrap_or(rest.len());
        if end == 0 {
            return None;
        }
        *field = &rest[..end];
        rest = &rest[end..];
    }
    Some(UnixRow {
        flags: u32::from_str_radix(fields[3], 16).ok()?,
        kind: u8::from_str_radix(fields[4], 16).ok()?,
        state: u8::from_str_radix(fields[5], 16).ok()?,
        inode: fields[6].parse().ok()?,
        path: rest.strip_prefix(' ').filter(|p| !p.is_empty()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bound_unbound_and_paths_with_spaces() {
        let text = "Num       RefCount Protocol Flags    Type St Inode Path
0000000000000000: 00000002 00000000 00010000 0001 01 23456 /run/app/control.sock
0000000000000000: 00000003 00000000 00000000 0001 03  1576
0000000000000000: 00000002 00000000 00000000 0002 01 777 /tmp/a b.sock
garbage
";
        let rows: Vec<UnixRow<'_>> = parse_rows(text).collect();
        assert_eq!(rows.len(), 3);
        assert!(rows[0].listening());
        assert_eq!(rows[0].path, Some("/run/app/control.sock"));
        assert_eq!(
            (rows[1].state, rows[1].inode, rows[1].path),
            (SS_CONNECTED, 1576, None)
        );
        assert_eq!(rows[2].path, Some("/tmp/a b.sock"));
    }
}
