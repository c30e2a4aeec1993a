//! node-pg-migrate's `.sql` migrations (`src/sqlMigration.ts`): the first
//! `-- Up Migration` comment starts the up section and the first
//! `-- Down Migration` comment the down section, each running to the other
//! marker or the end of the file. The markers are found as node-pg-migrate
//! finds them, with the regular expression `^\s*--[\s-]*up\s+migration`
//! (case-insensitive, multiline); its section is one `pgm.sql` call, so it
//! always runs in a transaction.

use std::path::Path;

use crate::error::Result;
use crate::migration::file::{Section, invalid};
use crate::sql_text;

/// The up section and the optional down section of the file at `path`.
pub fn parse_sections(path: &Path, text: &str) -> Result<(Section, Option<Section>)> {
    let up = find_marker(text, "up");
    let down = find_marker(text, "down");
    let section = |start: usize, end: usize| Section {
        path: path.to_path_buf(),
        sql: text[start..end].to_string(),
        // The SQL starts at the line of `start`.
        marker_line: sql_text::line_of_offset(text, start) - 1,
        transactional: true,
        exact_columns: true,
    };
    match (up, down) {
        (Some(up), Some(down)) if up < down => {
            Ok((section(up, down), Some(section(down, text.len()))))
        }
        (Some(up), Some(down)) => Ok((section(up, text.len()), Some(section(down, up)))),
        (Some(up), None) => Ok((section(up, text.len()), None)),
        (None, None) => Ok((section(0, text.len()), None)),
        (None, Some(down)) => Err(invalid(
            path,
            sql_text::line_of_offset(text, marker_start(text, down)),
            "a \"-- Down Migration\" section without an \"-- Up Migration\" one: node-pg-migrate would run the whole file, this section too, as the up migration; add an \"-- Up Migration\" line before the up SQL",
        )),
    }
}

/// Where the match of `^\s*--[\s-]*<word>\s+migration` (case-insensitive,
/// multiline) starts in `text`, as JavaScript's `String.search` finds it.
fn find_marker(text: &str, word: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut position = 0;
    while position <= text.len() {
        // `^`: the start, or just after a line terminator.
        let at_line_start = text.is_char_boundary(position)
            && (position == 0
                || matches!(bytes[position - 1], b'\n' | b'\r')
                || text[..position].ends_with(['\u{2028}', '\u{2029}']));
        if !at_line_start {
            position += 1;
            continue;
        }
        let rest = &text[position..];
        let after_space = rest.len() - rest.trim_start_matches(is_js_space).len();
        let candidate = &rest[after_space..];
        let Some(after_dashes) = candidate.strip_prefix("--") else {
            // Every line start up to the end of these spaces fails alike.
            position += after_space.max(1);
            continue;
        };
        let tail = after_dashes.trim_start_matches(|c| c == '-' || is_js_space(c));
        if starts_with_marker_words(tail, word) {
            return Some(position);
        }
        // Line starts inside the spaces and dashes end at the same `tail`.
        position = text.len() - tail.len();
        if position == text.len() {
            break;
        }
    }
    None
}

/// `<word>\s+migration`, ASCII letters in any case.
fn starts_with_marker_words(text: &str, word: &str) -> bool {
    let Some(rest) = strip_prefix_ignore_case(text, word) else {
        return false;
    };
    let after = rest.trim_start_matches(is_js_space);
    after.len() < rest.len() && strip_prefix_ignore_case(after, "migration").is_some()
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

/// JavaScript's `\s`: its white space and line terminators.
fn is_js_space(c: char) -> bool {
    matches!(
        c,
        '\t' | '\n' | '\u{b}' | '\u{c}' | '\r' | ' ' | '\u{a0}' | '\u{1680}' | '\u{2000}'
            ..='\u{200a}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202f}'
                | '\u{205f}'
                | '\u{3000}'
                | '\u{feff}'
    )
}

/// Where the `--` of a marker found at `start` is (its match may start at
/// blank lines before it).
fn marker_start(text: &str, start: usize) -> usize {
    start + text[start..].find("--").unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<(Section, Option<Section>)> {
        parse_sections(Path::new("migrations/1700000000000_a.sql"), text)
    }

    #[test]
    fn markers_as_node_pg_migrate_finds_them() {
        let cases: &[(&str, Option<usize>)] = &[
            ("-- Up Migration\n", Some(0)),
            ("-- up migration", Some(0)),
            ("--- UP   MIGRATION (create users)", Some(0)),
            ("  -- Up Migration", Some(0)),
            ("SELECT 1;\n-- Up Migration", Some(10)),
            ("SELECT 1;\n\n\n  -- Up Migration", Some(10)),
            ("--\n up migration", Some(0)),
            ("-- - up\tmigration", Some(0)),
            ("-- Up Migrations", Some(0)),
            ("SELECT 1; -- Up Migration", None),
            ("-- Upmigration", None),
            ("-- Upgrade migration", None),
            ("-- the Up Migration", None),
            ("", None),
            ("----------", None),
            ("\r-- up migration", Some(0)),
            ("x\u{2028}-- up migration", Some(4)),
        ];
        for (text, expected) in cases {
            assert_eq!(find_marker(text, "up"), *expected, "{text:?}");
        }
    }

    #[test]
    fn sections_run_to_the_other_marker() {
        let (up, down) =
            parse("-- Up Migration\nCREATE TABLE t ();\n\n-- Down Migration\nDROP TABLE t;\n")
                .unwrap();
        // As String.search finds it, the down marker's match starts at the
        // blank line before it (checked against node 20).
        assert_eq!(up.sql, "-- Up Migration\nCREATE TABLE t ();\n");
        assert_eq!(up.marker_line, 0);
        let statement = &sql_text::split_statements(&up.sql)[0];
        assert_eq!(up.file_line(statement.offset), 2);
        let down = down.unwrap();
        assert_eq!(down.sql, "\n-- Down Migration\nDROP TABLE t;\n");
        assert_eq!(down.marker_line, 2);
        let statement = &sql_text::split_statements(&down.sql)[0];
        assert_eq!(down.file_line(statement.offset), 5);
        assert!(up.transactional && down.transactional);

        // Down first.
        let (up, down) =
            parse("-- Down Migration\nDROP TABLE t;\n-- Up Migration\nCREATE TABLE t ();\n")
                .unwrap();
        assert_eq!(up.sql, "-- Up Migration\nCREATE TABLE t ();\n");
        assert_eq!(down.unwrap().sql, "-- Down Migration\nDROP TABLE t;\n");

        // No markers: the file is the up migration, and there is no down.
        let (up, down) = parse("CREATE TABLE t ();\n").unwrap();
        assert_eq!(
            (up.sql.as_str(), up.marker_line),
            ("CREATE TABLE t ();\n", 0)
        );
        assert!(down.is_none());

        let err = parse("SELECT 1;\n\n-- Down Migration\nSELECT 2;\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("1700000000000_a.sql:3: a \"-- Down Migration\" section without"),
            "{err}"
        );
    }
}
