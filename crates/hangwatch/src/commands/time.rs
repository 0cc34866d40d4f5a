//! Times as users give them on the command line (`10m` ago, or an RFC 3339 time with any
//! offset, read as the state directory's times are: [`hangwatch_supervisor::state::parse_time`]).

use std::time::SystemTime;

use hangwatch_supervisor::state::parse_time;

/// `--since`: a duration before `now` (`10m`, `1h30m`, a bare number of seconds) or an RFC 3339
/// time with `Z` or an offset (`2026-11-24T10:00:00Z`, `2026-11-24T11:00:00.5+01:00`).
pub fn parse_since(text: &str, now: SystemTime) -> Result<SystemTime, String> {
    let text = text.trim();
    if let Ok(ago) = hangwatch_config::duration::parse_duration(text) {
        return Ok(now.checked_sub(ago).unwrap_or(SystemTime::UNIX_EPOCH));
    }
    parse_time(text).ok_or_else(|| {
        format!(
            "`{text}` is neither a duration (10m, 1h) nor an RFC 3339 time with its zone \
             (2026-11-24T10:00:00Z, 2026-11-24T11:00:00+01:00)"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> SystemTime {
        humantime::parse_rfc3339(text).expect("a UTC time")
    }

    #[test]
    fn durations_are_before_now() {
        let now = at("2026-11-24T10:00:00Z");
        assert_eq!(parse_since("10m", now), Ok(at("2026-11-24T09:50:00Z")));
        assert_eq!(parse_since("1h30m", now), Ok(at("2026-11-24T08:30:00Z")));
        assert_eq!(parse_since("90", now), Ok(at("2026-11-24T09:58:30Z")));
    }

    #[test]
    fn times_take_their_offset() {
        let now = SystemTime::now();
        let utc = at("2026-11-24T10:00:00.250Z");
        assert_eq!(parse_since("2026-11-24T10:00:00.250Z", now), Ok(utc));
        assert_eq!(parse_since("2026-11-24T11:00:00.250+01:00", now), Ok(utc));
        assert_eq!(parse_since("2026-11-24T05:30:00.250-04:30", now), Ok(utc));
        assert_eq!(parse_since("2026-11-24 10:00:00.250z", now), Ok(utc));
    }

    #[test]
    fn anything_else_is_refused_with_the_forms_accepted() {
        let now = SystemTime::now();
        for bad in [
            "",
            "yesterday",
            "2026-11-24T10:00:00",
            "2026-11-24T10:00:00+1:00",
        ] {
            let err = parse_since(bad, now).expect_err(bad);
            assert!(err.contains("RFC 3339"), "{err}");
        }
    }
}
