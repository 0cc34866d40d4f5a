//! Hand-written argument parsing: positionals in order, then `--flag VALUE`
//! options, then nothing.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use crate::common::Error;

/// The arguments after the subcommand, consumed front to back.
pub(crate) struct Args {
    rest: VecDeque<OsString>,
}

impl Args {
    pub(crate) fn new(rest: Vec<OsString>) -> Self {
        Self { rest: rest.into() }
    }

    /// The next positional argument, as a path.
    pub(crate) fn path(&mut self, name: &str) -> Result<PathBuf, Error> {
        match self.rest.pop_front() {
            Some(value) if !value.is_empty() => Ok(PathBuf::from(value)),
            Some(_) => Err(Error::Usage(format!("{name} must not be empty"))),
            None => Err(Error::Usage(format!("missing {name}"))),
        }
    }

    /// The next positional argument, parsed as `T`.
    pub(crate) fn parse<T: std::str::FromStr>(&mut self, name: &str) -> Result<T, Error> {
        let value = self.text(name)?;
        value
            .parse()
            .map_err(|_| Error::Usage(format!("{name} is not valid: {value:?}")))
    }

    /// The next positional argument, as a duration in (possibly fractional)
    /// seconds.
    pub(crate) fn secs(&mut self, name: &str) -> Result<Duration, Error> {
        let value = self.text(name)?;
        parse_secs(&value)
            .ok_or_else(|| Error::Usage(format!("{name} is not a number of seconds: {value:?}")))
    }

    /// The value of `--flag VALUE` if the next argument is `flag`.
    pub(crate) fn option(&mut self, flag: &str) -> Result<Option<String>, Error> {
        if self.rest.front().is_none_or(|next| next != flag) {
            return Ok(None);
        }
        self.rest.pop_front();
        self.text(flag).map(Some)
    }

    /// The value of `--flag SECS` if the next argument is `flag`.
    pub(crate) fn option_secs(&mut self, flag: &str) -> Result<Option<Duration>, Error> {
        let Some(value) = self.option(flag)? else {
            return Ok(None);
        };
        parse_secs(&value)
            .map(Some)
            .ok_or_else(|| Error::Usage(format!("{flag} needs a number of seconds: {value:?}")))
    }

    /// Whether the next argument is `flag` (taken if so).
    pub(crate) fn flag(&mut self, flag: &str) -> bool {
        if self.rest.front().is_some_and(|next| next == flag) {
            self.rest.pop_front();
            true
        } else {
            false
        }
    }

    /// Fails if any argument was left over.
    pub(crate) fn finish(self) -> Result<(), Error> {
        match self.rest.front() {
            None => Ok(()),
            Some(extra) => Err(Error::Usage(format!("unexpected argument {extra:?}"))),
        }
    }

    fn text(&mut self, name: &str) -> Result<String, Error> {
        let value = self
            .rest
            .pop_front()
            .ok_or_else(|| Error::Usage(format!("missing {name}")))?;
        value
            .into_string()
            .map_err(|value| Error::Usage(format!("{name} is not UTF-8: {value:?}")))
    }
}

/// Parses a non-negative, finite number of seconds such as `5` or `0.25`.
fn parse_secs(text: &str) -> Option<Duration> {
    let secs: f64 = text.parse().ok()?;
    Duration::try_from_secs_f64(secs).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secs_accept_integers_and_fractions() {
        assert_eq!(parse_secs("5"), Some(Duration::from_secs(5)));
        assert_eq!(parse_secs("0.25"), Some(Duration::from_millis(250)));
        assert_eq!(parse_secs("0"), Some(Duration::ZERO));
    }

    #[test]
    fn secs_reject_negative_and_non_finite() {
        for bad in ["-1", "nan", "inf", "", "1s"] {
            assert_eq!(parse_secs(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn option_is_taken_only_when_named() {
        let mut args = Args::new(vec!["--stay".into(), "3".into()]);
        assert_eq!(args.option("--other").ok(), Some(None));
        assert_eq!(args.option("--stay").ok(), Some(Some("3".to_owned())));
        assert!(args.finish().is_ok());
    }

    #[test]
    fn flag_is_taken_only_when_named() {
        let mut args = Args::new(vec!["--attach".into()]);
        assert!(!args.flag("--other"));
        assert!(args.flag("--attach"));
        assert!(args.finish().is_ok());
    }

    #[test]
    fn leftover_argument_is_misuse() {
        let args = Args::new(vec!["extra".into()]);
        assert!(matches!(args.finish(), Err(Error::Usage(_))));
    }
}
