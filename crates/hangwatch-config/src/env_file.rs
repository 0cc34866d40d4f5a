//! `env_file`: `KEY=VALUE` lines, as docker compose and python-dotenv read them, without
//! variable expansion.
//!
//! - blank lines and lines starting with `#` are skipped; `export ` before a key is allowed;
//! - spaces around `=` are allowed;
//! - `'single quotes'` keep the text as is; `"double quotes"` read `\n`, `\t`, `\r`, `\"`, `\\`,
//!   `\$` and `` \` `` (any other backslash is kept); a quoted value ends on its line;
//! - an unquoted value ends at ` #` (a comment) and is trimmed.

/// A line of an env file that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EnvFileError {
    /// 1-based.
    pub line: usize,
    /// 1-based, in characters.
    pub column: usize,
    pub message: String,
}

/// Every variable of the file in order, or every bad line.
pub(crate) fn parse_env_file(text: &str) -> Result<Vec<(String, String)>, Vec<EnvFileError>> {
    let mut vars = Vec::new();
    let mut errors = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        match parse_line(raw) {
            Ok(Some(var)) => vars.push(var),
            Ok(None) => {}
            Err((byte, message)) => errors.push(EnvFileError {
                line: index + 1,
                column: raw
                    .get(..byte)
                    .map_or(byte, |prefix| prefix.chars().count())
                    + 1,
                message,
            }),
        }
    }
    if errors.is_empty() {
        Ok(vars)
    } else {
        Err(errors)
    }
}

/// One line: a variable, nothing (blank or comment), or the byte offset of the fault and what
/// was expected.
fn parse_line(raw: &str) -> Result<Option<(String, String)>, (usize, String)> {
    let line = raw.strip_suffix('\r').unwrap_or(raw);
    let body = line.trim_start();
    if body.is_empty() || body.starts_with('#') {
        return Ok(None);
    }
    let mut at = line.len() - body.len();
    let mut rest = body;
    if let Some(after) = rest.strip_prefix("export")
        && after.starts_with([' ', '\t'])
    {
        let trimmed = after.trim_start();
        at += rest.len() - trimmed.len();
        rest = trimmed;
    }
    let Some((key, value)) = rest.split_once('=') else {
        return Err((at, "expected `KEY=VALUE`".to_owned()));
    };
    let key = key.trim_end();
    if !is_variable_name(key) {
        return Err((
            at,
            format!(
                "invalid variable name `{key}`: expected letters, digits and `_`, not starting with a digit"
            ),
        ));
    }
    let value_at = at + rest.len() - value.len();
    let trimmed = value.trim_start();
    let value_at = value_at + value.len() - trimmed.len();
    let value = parse_value(trimmed).map_err(|(offset, message)| (value_at + offset, message))?;
    Ok(Some((key.to_owned(), value)))
}

fn parse_value(text: &str) -> Result<String, (usize, String)> {
    let (quote, body) = match text.chars().next() {
        Some(quote @ ('"' | '\'')) => (quote, &text[1..]),
        _ => {
            let end = text
                .char_indices()
                .find(|&(i, c)| c == '#' && text[..i].ends_with([' ', '\t']))
                .map_or(text.len(), |(i, _)| i);
            return Ok(text[..end].trim_end().to_owned());
        }
    };
    let mut value = String::new();
    let mut chars = body.char_indices();
    let close = loop {
        let Some((i, c)) = chars.next() else {
            let name = if quote == '"' { "double" } else { "single" };
            return Err((
                0,
                format!("unterminated {name} quote (a quoted value ends on its line)"),
            ));
        };
        match c {
            c if c == quote => break i,
            '\\' if quote == '"' => match chars.next() {
                Some((_, 'n')) => value.push('\n'),
                Some((_, 't')) => value.push('\t'),
                Some((_, 'r')) => value.push('\r'),
                Some((_, c @ ('"' | '\\' | '$' | '`'))) => value.push(c),
                Some((_, c)) => {
                    value.push('\\');
                    value.push(c);
                }
                None => value.push('\\'),
            },
            c => value.push(c),
        }
    };
    // 1 for the opening quote, 1 for the closing one.
    let after = &body[close + 1..];
    let rest = after.trim_start();
    if !rest.is_empty() && !rest.starts_with('#') {
        let offset = 1 + close + 1 + after.len() - rest.len();
        return Err((
            offset,
            "unexpected text after the closing quote (expected the end of the line or a `#` comment)"
                .to_owned(),
        ));
    }
    Ok(value)
}

fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(text: &str) -> Vec<(String, String)> {
        parse_env_file(text).expect("valid env file")
    }

    fn pair(key: &str, value: &str) -> (String, String) {
        (key.to_owned(), value.to_owned())
    }

    #[test]
    fn reads_dotenv_lines() {
        let text = "# comment\n\nA=1\nexport B = two words \nC=\"x\\ny \\\"q\\\" \\$HOME\" # note\nD='a \\n $b'\nE=\nF=g#h\nG=h # comment\r\n  H=spaced\n";
        assert_eq!(
            vars(text),
            [
                pair("A", "1"),
                pair("B", "two words"),
                pair("C", "x\ny \"q\" $HOME"),
                pair("D", "a \\n $b"),
                pair("E", ""),
                pair("F", "g#h"),
                pair("G", "h"),
                pair("H", "spaced"),
            ]
        );
    }

    #[test]
    fn an_equals_sign_in_the_value_is_kept() {
        assert_eq!(
            vars("URL=postgres://u@h/db?a=b\n"),
            [pair("URL", "postgres://u@h/db?a=b")]
        );
    }

    #[test]
    fn reports_every_bad_line_with_its_position() {
        let text = "OK=1\nnot a pair\n1X=2\nQ=\"open\nR='x' y\n  export é=1\n";
        let errors = parse_env_file(text).expect_err("invalid");
        let positions: Vec<_> = errors.iter().map(|e| (e.line, e.column)).collect();
        assert_eq!(positions, [(2, 1), (3, 1), (4, 3), (5, 7), (6, 10)]);
        assert!(
            errors[0].message.contains("expected `KEY=VALUE`"),
            "{errors:?}"
        );
        assert!(
            errors[1].message.contains("invalid variable name `1X`"),
            "{errors:?}"
        );
        assert!(
            errors[2].message.contains("unterminated double quote"),
            "{errors:?}"
        );
        assert!(
            errors[3].message.contains("after the closing quote"),
            "{errors:?}"
        );
        assert!(errors[4].message.contains("`é`"), "{errors:?}");
    }
}
