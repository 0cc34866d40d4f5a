//! "did you mean …?": the nearest of the valid names to a misspelt one.

/// The candidate closest to `given`, if one is close enough to be what the user meant: at most
/// one edit in three characters (a swap of two neighbours counts as one edit, so `restrat`
/// finds `restart`), or one is a prefix of the other (`depends` finds `depends_on`).
pub(crate) fn nearest<'a>(
    given: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let lower = given.to_lowercase();
    let budget = (lower.chars().count() / 3).max(1);
    let mut best: Option<(usize, &str)> = None;
    for candidate in candidates {
        let folded = candidate.to_lowercase();
        let distance = strsim::damerau_levenshtein(&lower, &folded);
        let prefix = lower.len() >= 3
            && (folded.starts_with(lower.as_str()) || lower.starts_with(folded.as_str()));
        let score = if distance <= budget {
            distance
        } else if prefix {
            budget + 1
        } else {
            continue;
        };
        if best.is_none_or(|(best_score, _)| score < best_score) {
            best = Some((score, candidate));
        }
    }
    best.map(|(_, candidate)| candidate)
}

/// `; did you mean `x`?` or nothing.
pub(crate) fn did_you_mean<'a>(
    given: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> String {
    nearest(given, candidates)
        .map(|name| format!("; did you mean `{name}`?"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEYS: &[&str] = &[
        "restart",
        "restart_with_dependency",
        "depends_on",
        "env",
        "env_file",
    ];

    #[test]
    fn finds_typos_and_prefixes() {
        assert_eq!(nearest("restrat", KEYS.iter().copied()), Some("restart"));
        assert_eq!(nearest("Restart", KEYS.iter().copied()), Some("restart"));
        assert_eq!(nearest("depends", KEYS.iter().copied()), Some("depends_on"));
        assert_eq!(
            nearest("depends-on", KEYS.iter().copied()),
            Some("depends_on")
        );
        assert_eq!(nearest("envfile", KEYS.iter().copied()), Some("env_file"));
        assert_eq!(nearest("evn", KEYS.iter().copied()), Some("env"));
    }

    #[test]
    fn suggests_nothing_for_strangers() {
        assert_eq!(nearest("colour", KEYS.iter().copied()), None);
        assert_eq!(nearest("x", KEYS.iter().copied()), None);
        assert_eq!(did_you_mean("colour", KEYS.iter().copied()), "");
    }
}
