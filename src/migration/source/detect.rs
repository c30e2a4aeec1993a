//! Which format a migrations folder is in, from what it holds: each format
//! has signs only it leaves (a marker line, a file suffix, a folder per
//! migration). One format per folder: signs of two formats are an error
//! that names a file of each.

use std::path::Path;

use crate::error::{Error, Result};
use crate::migration::source::Format;

/// The format of the folder `dir`: the only one whose signs it holds, or
/// orch's own (dbmate's) for a missing or empty folder. Signs of two
/// formats are an error naming a file showing each.
pub fn detect(dir: &Path) -> Result<Format> {
    Ok(detect_signs(dir)?.unwrap_or(Format::Dbmate))
}

/// The only format whose signs `dir` holds; None when it holds none.
pub fn detect_signs(dir: &Path) -> Result<Option<Format>> {
    let signs = signs(dir)?;
    let mut found: Vec<(Format, String)> = Vec::new();
    for (format, file) in signs {
        if !found.iter().any(|(f, _)| *f == format) {
            found.push((format, file));
        }
    }
    // golang-migrate's and sqlx's reversible files are named alike; sqlx's
    // own signs (`-- no-transaction`, up-only files) decide for sqlx.
    if found.iter().any(|(f, _)| *f == Format::Sqlx) {
        found.retain(|(f, _)| *f != Format::GolangMigrate);
    }
    match found.len() {
        0 => Ok(None),
        1 => Ok(Some(found[0].0)),
        _ => {
            let shown: Vec<String> = found
                .iter()
                .map(|(format, file)| format!("{format} ({file})"))
                .collect();
            Err(Error::Usage(format!(
                "{}: holds migrations of more than one format: {}; a folder holds one format. Move the others to their own folder, or pass --format NAME to read it as one format",
                dir.display(),
                shown.join(", ")
            )))
        }
    }
}

/// Each sign of a format in `dir`, with the entry that shows it.
fn signs(dir: &Path) -> Result<Vec<(Format, String)>> {
    let names = super::folder_entries(dir)?;
    let mut signs = Vec::new();
    let mut plain = Vec::new();
    for path in names {
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let shown = name.to_string();
        if path.is_dir() {
            if path.join("up.sql").is_file() {
                signs.push((Format::Diesel, format!("{shown}/up.sql")));
            }
            continue;
        }
        let starts_with_digit = name.bytes().next().is_some_and(|b| b.is_ascii_digit());
        if [".js", ".cjs", ".mjs", ".ts"]
            .iter()
            .any(|ext| name.ends_with(ext))
        {
            if starts_with_digit {
                signs.push((Format::NodePgMigrate, shown));
            }
            continue;
        }
        if name.ends_with(".go") && starts_with_digit && !name.ends_with("_test.go") {
            // goose's Go migrations (which orch refuses, naming them).
            signs.push((Format::Goose, shown));
            continue;
        }
        if !name.ends_with(".sql") {
            continue;
        }
        // Unreadable text is the reader's to report, at its file.
        let text = std::fs::read(&path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
        let first_line = text.lines().next().unwrap_or("").trim();
        let reversible = name.ends_with(".up.sql") || name.ends_with(".down.sql");
        if reversible {
            if first_line == "-- no-transaction" {
                signs.push((Format::Sqlx, shown));
            } else {
                signs.push((Format::GolangMigrate, shown));
            }
            continue;
        }
        if let Some(format) = marker_format(text) {
            signs.push((format, shown));
        } else if starts_with_digit && !text.trim().is_empty() {
            // SQL with no marker at all: sqlx's up-only migrations, unless
            // the folder shows another format (node-pg-migrate also reads
            // such a file as all up; in a dbmate folder it is that file's
            // problem, which its reader reports at its line).
            plain.push(shown);
        }
    }
    let others = signs
        .iter()
        .any(|(f, _)| !matches!(f, Format::GolangMigrate | Format::Sqlx));
    if !others && let Some(first) = plain.into_iter().next() {
        signs.push((Format::Sqlx, first));
    }
    Ok(signs)
}

/// The format whose section marker is on a line of `text`, if any.
fn marker_format(text: &str) -> Option<Format> {
    text.lines().find_map(|line| {
        let comment = line.trim().strip_prefix("--")?.trim();
        let lower = comment.to_ascii_lowercase();
        if lower.starts_with("migrate:") {
            Some(Format::Dbmate)
        } else if lower.starts_with("+goose ") {
            Some(Format::Goose)
        } else if lower.starts_with("up migration") || lower.starts_with("down migration") {
            // node-pg-migrate matches the words at the start of the
            // comment, whatever follows.
            Some(Format::NodePgMigrate)
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        dir
    }

    #[test]
    fn each_format_is_told_by_its_signs() {
        let cases: &[(&[(&str, &str)], Format)] = &[
            (&[], Format::Dbmate),
            (&[("README.md", "hi")], Format::Dbmate),
            (&[("1_a.sql", "-- migrate:up\nSELECT 1;\n")], Format::Dbmate),
            (
                &[
                    ("2017-08-31-230457_a/up.sql", "SELECT 1;"),
                    ("README.md", "x"),
                ],
                Format::Diesel,
            ),
            (
                &[("000001_a.up.sql", "SELECT 1;"), ("000001_a.down.sql", "")],
                Format::GolangMigrate,
            ),
            (&[("1_a.sql", "-- +goose Up\nSELECT 1;\n")], Format::Goose),
            (&[("1_a.sql", "CREATE TABLE a ();\n")], Format::Sqlx),
            (
                &[
                    ("1_a.up.sql", "CREATE TABLE a ();\n"),
                    ("2_b.up.sql", "-- no-transaction\nSELECT 1;\n"),
                ],
                Format::Sqlx,
            ),
            (
                &[("1700000000000_a.sql", "-- Up Migration\nSELECT 1;\n")],
                Format::NodePgMigrate,
            ),
            (
                &[("1700000000000_a.js", "exports.up = pgm => {};\n")],
                Format::NodePgMigrate,
            ),
            (
                &[(
                    "1700000000000_a.sql",
                    "-- Up Migration (users)\nSELECT 1;\n",
                )],
                Format::NodePgMigrate,
            ),
            (&[("00001_a.go", "package migrations\n")], Format::Goose),
        ];
        for (files, expected) in cases {
            let dir = folder(files);
            assert_eq!(detect(dir.path()).unwrap(), *expected, "{files:?}");
        }
        assert_eq!(
            detect(Path::new("/nonexistent/orch/migrations")).unwrap(),
            Format::Dbmate
        );
    }

    #[test]
    fn plain_sql_files_count_only_when_nothing_else_decides() {
        let dir = folder(&[
            ("1700000000000_a.sql", "-- Up Migration\nSELECT 1;\n"),
            ("1700000000001_b.sql", "CREATE TABLE b ();\n"),
        ]);
        assert_eq!(detect(dir.path()).unwrap(), Format::NodePgMigrate);
        let dir = folder(&[
            ("1_a.sql", "-- migrate:up\nSELECT 1;\n"),
            ("2_b.sql", "CREATE TABLE b ();\n"),
        ]);
        assert_eq!(detect(dir.path()).unwrap(), Format::Dbmate);
        let dir = folder(&[
            ("1_a.up.sql", "SELECT 1;\n"),
            ("2_b.sql", "CREATE TABLE b ();\n"),
        ]);
        assert_eq!(detect(dir.path()).unwrap(), Format::Sqlx);
    }

    #[test]
    fn a_mixed_folder_is_an_error_naming_a_file_of_each() {
        let dir = folder(&[
            ("1_a.sql", "-- migrate:up\nSELECT 1;\n"),
            ("2_b.sql", "-- +goose Up\nSELECT 1;\n"),
        ]);
        let err = detect(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("more than one format: dbmate (1_a.sql), goose (2_b.sql)"),
            "{err}"
        );
        assert!(err.contains("--format"), "{err}");
    }
}
