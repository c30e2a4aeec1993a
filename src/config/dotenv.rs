//! `.env` in the current directory, read as dbmate and sqlx read it:
//! `NAME=value` lines (an optional `export `, optional single or double
//! quotes, `#` comments). Its values never override the real environment.

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{Error, Result};

/// The variables of the `.env` file at `path`; none when there is no file.
pub fn read(path: &Path) -> Result<BTreeMap<String, String>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(source) => {
            return Err(Error::Io {
                context: "cannot read the .env file".to_string(),
                path: path.to_path_buf(),
                source,
            });
        }
    };
    parse(&text).map_err(|(line, message)| Error::InvalidConfig {
        path: path.to_path_buf(),
        line,
        column: 1,
        message,
    })
}

/// `NAME=value` lines; the error is a 1-based line and why.
pub fn parse(text: &str) -> std::result::Result<BTreeMap<String, String>, (usize, String)> {
    let mut vars = BTreeMap::new();
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line).trim_start();
        let Some((name, value)) = line.split_once('=') else {
            return Err((
                index + 1,
                format!("expected NAME=value, found {:?}", shorten(line)),
            ));
        };
        let name = name.trim();
        if name.is_empty()
            || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            || name.starts_with(|c: char| c.is_ascii_digit())
        {
            return Err((
                index + 1,
                format!(
                    "{:?} is not a variable name (letters, digits and _)",
                    shorten(name)
                ),
            ));
        }
        vars.insert(name.to_string(), value_of(value.trim()));
    }
    Ok(vars)
}

/// A value: quoted (kept as written, `#` included), or bare (up to a ` #` comment).
fn value_of(text: &str) -> String {
    for quote in ['"', '\''] {
        if let Some(rest) = text.strip_prefix(quote)
            && let Some(end) = rest.find(quote)
        {
            return rest[..end].to_string();
        }
    }
    match text.find(" #") {
        Some(i) => text[..i].trim_end().to_string(),
        None => text.to_string(),
    }
}

/// What of a bad line an error quotes: it may hold a password, so little.
fn shorten(text: &str) -> String {
    text.chars().take(20).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_names_values_quotes_and_comments() {
        let vars = parse(
            "# comment\n\nDATABASE_URL=postgres://u@h/db\nexport SHARD_1_URL = \"postgres://a b#c\"\nQ='x' \nBARE=value # note\nEMPTY=\n",
        )
        .unwrap();
        let expected: BTreeMap<String, String> = [
            ("DATABASE_URL", "postgres://u@h/db"),
            ("SHARD_1_URL", "postgres://a b#c"),
            ("Q", "x"),
            ("BARE", "value"),
            ("EMPTY", ""),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(vars, expected);
    }

    #[test]
    fn a_bad_line_is_named() {
        for (text, line, says) in [
            ("A=1\nno equals sign\n", 2, "expected NAME=value"),
            ("1A=x\n", 1, "is not a variable name"),
            ("=x\n", 1, "is not a variable name"),
            ("A-B=x\n", 1, "is not a variable name"),
        ] {
            let (at, message) = parse(text).unwrap_err();
            assert_eq!(at, line, "{text:?}");
            assert!(message.contains(says), "{text:?}: {message}");
        }
    }
}
