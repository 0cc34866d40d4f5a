//! Sizes as users write them: `4GiB`, `512MB`, `512MiB`, `100k`, or a bare number of bytes.

/// A size that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid size `{text}`: {reason} (examples: 4GiB, 512MB, 512MiB, 100k, 65536)")]
pub struct SizeError {
    /// The text as given.
    pub text: String,
    /// What was wrong with it.
    pub reason: String,
}

/// Parses a size in bytes. Units are case-insensitive: `kB`, `MB`, `GB`, `TB` are powers of
/// 1000 (SI); `KiB`, `MiB`, `GiB`, `TiB` and the bare letters `k`, `M`, `G`, `T` are powers of
/// 1024, as systemd's `MemoryMax=` and docker's `--memory` read them. A fraction is allowed
/// (`1.5GiB`) and rounded down to whole bytes.
pub fn parse_size(text: &str) -> Result<u64, SizeError> {
    let error = |reason: &str| SizeError {
        text: text.to_owned(),
        reason: reason.to_owned(),
    };
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(error("it is empty"));
    }
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    if number.is_empty() {
        return Err(error("it does not start with a number"));
    }
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1000,
        "mb" => 1000_u64.pow(2),
        "gb" => 1000_u64.pow(3),
        "tb" => 1000_u64.pow(4),
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        _ => {
            return Err(error(
                "unknown unit (expected B, kB, MB, GB, TB, KiB, MiB, GiB, TiB, k, M, G or T)",
            ));
        }
    };
    if let Ok(whole) = number.parse::<u64>() {
        return whole
            .checked_mul(multiplier)
            .ok_or_else(|| error("it is too large"));
    }
    let value: f64 = number.parse().map_err(|_| error("not a number"))?;
    #[expect(
        clippy::cast_precision_loss,
        reason = "multipliers are powers of 1000 or 1024, exact in an f64"
    )]
    let bytes = (value * multiplier as f64).floor();
    // 2^64 is exactly representable; anything at or above it does not fit.
    if !bytes.is_finite() || bytes >= 18_446_744_073_709_551_616.0 {
        return Err(error("it is too large"));
    }
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "checked above: finite, non-negative, below 2^64"
    )]
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_users_write() {
        let cases = [
            ("4GiB", 4 << 30),
            ("512MB", 512_000_000),
            ("512MiB", 512 << 20),
            ("512mib", 512 << 20),
            ("100k", 100 << 10),
            ("100kB", 100_000),
            ("10M", 10 << 20),
            ("2T", 2 << 40),
            ("65536", 65536),
            ("65536B", 65536),
            ("1.5GiB", 3 << 29),
            ("0.5k", 512),
            (" 1 GiB ", 1 << 30),
        ];
        for (text, bytes) in cases {
            assert_eq!(parse_size(text), Ok(bytes), "{text}");
        }
    }

    #[test]
    fn rejects_nonsense_with_the_text_in_the_message() {
        for text in [
            "",
            "GiB",
            "10 parsecs",
            "1..5k",
            "-5k",
            "99999999999999999999T",
        ] {
            let err = parse_size(text).expect_err(text);
            assert!(err.to_string().contains(&format!("`{text}`")), "{err}");
        }
    }
}
