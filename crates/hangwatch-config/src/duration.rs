//! Durations as users write them: `90s`, `5m`, `1h30m`, `250ms`, or a bare number of seconds.

use std::time::Duration;

/// A duration that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration `{text}`: {reason} (examples: 90s, 5m, 1h30m, 250ms, 1.5s)")]
pub struct DurationError {
    /// The text as given.
    pub text: String,
    /// What was wrong with it.
    pub reason: String,
}

/// Parses a human duration. A bare number means seconds (as GNU `timeout` reads it), and may
/// have a fraction (`0.5`).
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let trimmed = text.trim();
    let error = |reason: String| DurationError {
        text: text.to_owned(),
        reason,
    };
    if trimmed.is_empty() {
        return Err(error("it is empty".into()));
    }
    if trimmed.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        let secs: f64 = trimmed.parse().map_err(|_| error("not a number".into()))?;
        return Duration::try_from_secs_f64(secs).map_err(|err| error(err.to_string()));
    }
    // humantime reads `1h30m` and `1h 30m` alike, but not fractions: `1.5s` is turned into
    // milliseconds first.
    if let Some(number) = trimmed.strip_suffix('s')
        && number.contains('.')
        && number.bytes().all(|b| b.is_ascii_digit() || b == b'.')
    {
        let secs: f64 = number.parse().map_err(|_| error("not a number".into()))?;
        return Duration::try_from_secs_f64(secs).map_err(|err| error(err.to_string()));
    }
    humantime::parse_duration(trimmed).map_err(|err| error(err.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_users_write() {
        let cases = [
            ("90s", 90_000),
            ("5m", 300_000),
            ("1h30m", 5_400_000),
            ("1h 30m", 5_400_000),
            ("250ms", 250),
            ("10", 10_000),
            ("0.5", 500),
            ("1.5s", 1_500),
        ];
        for (text, ms) in cases {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_millis(ms)),
                "{text}"
            );
        }
    }

    #[test]
    fn rejects_nonsense_with_the_text_in_the_message() {
        for text in ["", "abc", "10x", "-5s", "1..5"] {
            let err = parse_duration(text).expect_err(text);
            assert!(err.to_string().contains(&format!("`{text}`")), "{err}");
        }
    }
}
