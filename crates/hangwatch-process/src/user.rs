//! Running a program as another user, as systemd's `User=` does.
//!
//! The user is looked up in the user database (`getpwnam_r`, `getgrouplist`) here, before the
//! fork: those calls may read files or ask NSS, which is not async-signal-safe and so cannot
//! run in the child. The child then only makes the raw calls (`setgroups`, `setgid`, `setuid`),
//! in `sys`.

use std::path::PathBuf;

/// A user to run a program as: the identity a login would give (uid, primary gid, every
/// supplementary group, as `initgroups(3)` would set them) and what the login variables
/// (`HOME`, `USER`, `LOGNAME`, `SHELL`) default to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    /// The user's name, for `USER` and `LOGNAME`.
    pub name: String,
    /// The user ID.
    pub uid: u32,
    /// The primary group ID.
    pub gid: u32,
    /// Every group of the user, the primary one included.
    pub groups: Vec<u32>,
    /// The home directory, for `HOME`.
    pub home: PathBuf,
    /// The login shell, for `SHELL`.
    pub shell: PathBuf,
}

/// Why a user could not be looked up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UserError {
    /// The user database has no such user.
    #[error("no such user `{user}`")]
    NotFound {
        /// The name or uid as given.
        user: String,
    },
    /// The lookup itself failed (an unreadable database, an NSS service down).
    #[error("cannot look up user `{user}`: {source}")]
    Lookup {
        /// The name or uid as given.
        user: String,
        /// What the lookup said.
        source: std::io::Error,
    },
}

impl RunAs {
    /// Looks up `user`, a name or a decimal uid (a number is a uid, as for systemd's `User=`;
    /// it must be in the user database too, since the group and home come from there).
    ///
    /// Blocks for as long as the user database takes to answer: a local `/etc/passwd` answers in
    /// microseconds, a network directory may take longer.
    pub fn lookup(user: &str) -> Result<RunAs, UserError> {
        use nix::unistd::{Gid, Uid, User, getgrouplist};
        let failed = |errno: nix::errno::Errno| UserError::Lookup {
            user: user.to_owned(),
            source: errno.into(),
        };
        let entry = match user.parse::<u32>() {
            Ok(uid) => User::from_uid(Uid::from_raw(uid)),
            Err(_) => User::from_name(user),
        }
        .map_err(failed)?
        .ok_or_else(|| UserError::NotFound {
            user: user.to_owned(),
        })?;
        let name =
            std::ffi::CString::new(entry.name.as_str()).map_err(|_| UserError::NotFound {
                user: user.to_owned(),
            })?;
        let mut groups: Vec<u32> = getgrouplist(&name, entry.gid)
            .map_err(failed)?
            .into_iter()
            .map(Gid::as_raw)
            .collect();
        if !groups.contains(&entry.gid.as_raw()) {
            groups.insert(0, entry.gid.as_raw());
        }
        Ok(RunAs {
            name: entry.name,
            uid: entry.uid.as_raw(),
            gid: entry.gid.as_raw(),
            groups,
            home: entry.dir,
            shell: entry.shell,
        })
    }

    /// The login variables the program gets unless its own environment sets them.
    pub(crate) fn login_env(&self) -> [(&'static str, std::ffi::OsString); 4] {
        [
            ("HOME", self.home.clone().into_os_string()),
            ("USER", self.name.clone().into()),
            ("LOGNAME", self.name.clone().into()),
            ("SHELL", self.shell.clone().into_os_string()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_found_by_name_and_by_uid() {
        let by_name = RunAs::lookup("root").expect("root exists");
        assert_eq!((by_name.uid, by_name.gid), (0, 0));
        assert!(by_name.groups.contains(&0));
        assert_eq!(RunAs::lookup("0").expect("uid 0 exists"), by_name);
    }

    #[test]
    fn an_unknown_user_is_named() {
        let err = RunAs::lookup("hangwatch-no-such-user").expect_err("unknown");
        assert_eq!(err.to_string(), "no such user `hangwatch-no-such-user`");
        assert!(matches!(
            RunAs::lookup("4294967294"),
            Err(UserError::NotFound { .. })
        ));
    }
}
