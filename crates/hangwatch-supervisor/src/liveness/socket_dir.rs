//! Where hangwatch puts the sockets its programs must reach: a private runtime directory (only
//! this user can enter it), or a shared one (every user may pass through, for services that run
//! as another user).

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// `$XDG_RUNTIME_DIR/hangwatch`, or `/tmp/hangwatch-UID`: a directory only this user can enter,
/// so that only this user's processes can reach the sockets in it.
pub fn private() -> io::Result<PathBuf> {
    let uid = nix::unistd::getuid().as_raw();
    private_at(
        match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
            Some(base) => PathBuf::from(base).join("hangwatch"),
            None => std::env::temp_dir().join(format!("hangwatch-{uid}")),
        },
    )
}

/// `/tmp/hangwatch-UID`, whatever `XDG_RUNTIME_DIR` and `TMPDIR` say: the fallback for a
/// socket whose path under those would not fit a socket address (107 bytes).
pub fn short_private() -> io::Result<PathBuf> {
    let uid = nix::unistd::getuid().as_raw();
    private_at(PathBuf::from(format!("/tmp/hangwatch-{uid}")))
}

/// `dir`, created with mode 0700 if missing, checked to be a directory of this user that
/// nobody else can enter.
fn private_at(dir: PathBuf) -> io::Result<PathBuf> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let uid = nix::unistd::getuid().as_raw();
    match fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
        Err(err) => return Err(err),
    }
    let meta = fs::symlink_metadata(&dir)?;
    if !meta.is_dir() || meta.uid() != uid || meta.permissions().mode() & 0o077 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} is not a private directory of this user (owner {}, mode {:o})",
                dir.display(),
                meta.uid(),
                meta.permissions().mode() & 0o777
            ),
        ));
    }
    Ok(dir)
}

/// A directory every user may pass through but none other than hangwatch's may list or write
/// (mode 0711): `/run/hangwatch` for root, as systemd's `/run/systemd`, or
/// `$TMPDIR/hangwatch-UID-shared`. A private runtime directory (0700) cannot hold a socket that
/// programs of other users must reach, since they could not enter it.
///
/// It must be a real directory owned by hangwatch's user and writable by nobody else, so that
/// nobody else can replace the socket; a mode narrower than 0711 is widened.
pub fn shared() -> io::Result<PathBuf> {
    let uid = nix::unistd::geteuid();
    let run = Path::new("/run");
    shared_at(if uid.is_root() && run.is_dir() {
        run.join("hangwatch")
    } else {
        std::env::temp_dir().join(format!("hangwatch-{uid}-shared"))
    })
}

/// `/tmp/hangwatch-UID-shared`, whatever `TMPDIR` says: the fallback of [`shared`] for a
/// socket whose path would not fit a socket address.
pub fn short_shared() -> io::Result<PathBuf> {
    let uid = nix::unistd::geteuid();
    shared_at(PathBuf::from(format!("/tmp/hangwatch-{uid}-shared")))
}

/// `dir`, created with mode 0711 if missing, checked as [`shared`] says.
fn shared_at(dir: PathBuf) -> io::Result<PathBuf> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let uid = nix::unistd::geteuid();
    match fs::DirBuilder::new().mode(0o711).create(&dir) {
        Ok(()) => {}
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
        Err(err) => return Err(err),
    }
    let meta = fs::symlink_metadata(&dir)?;
    let mode = meta.permissions().mode() & 0o777;
    if !meta.is_dir() || meta.uid() != uid.as_raw() || mode & 0o022 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} is not a directory of this user that only it can write (owner {}, mode {mode:o})",
                dir.display(),
                meta.uid(),
            ),
        ));
    }
    if mode & 0o711 != 0o711 {
        fs::set_permissions(&dir, fs::Permissions::from_mode(mode | 0o711))?;
    }
    Ok(dir)
}
