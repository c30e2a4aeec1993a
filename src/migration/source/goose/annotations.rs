//! A goose SQL file's sections and statements, read the way goose's own
//! parser (`internal/sqlparser/parser.go`) reads them: `-- +goose`
//! annotation lines (case-insensitive, at the start of their line), a
//! statement ending at each line whose last word ends in `;`, and
//! `StatementBegin` / `StatementEnd` blocks sent as one statement. What goose
//! refuses, orch refuses at its line; where goose's statements and orch's
//! would differ, orch refuses too, with the fix.

use std::path::Path;

use crate::error::Result;
use crate::migration::file::{Section, invalid};
use crate::sql_text;

/// The annotations goose knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Annotation {
    Up,
    Down,
    StatementBegin,
    StatementEnd,
    NoTransaction,
    EnvsubOn,
    EnvsubOff,
}

const ANNOTATIONS: &[(&str, Annotation)] = &[
    ("Up", Annotation::Up),
    ("Down", Annotation::Down),
    ("StatementBegin", Annotation::StatementBegin),
    ("StatementEnd", Annotation::StatementEnd),
    ("NO TRANSACTION", Annotation::NoTransaction),
    ("ENVSUB ON", Annotation::EnvsubOn),
    ("ENVSUB OFF", Annotation::EnvsubOff),
];

/// goose's reading of `line` as an annotation: None for any other line, an
/// error for a line goose refuses. goose takes a line for an annotation when
/// it starts (after spaces) with `--` and holds `+goose` (case-sensitive);
/// it then drops every `--` and the first `+goose` and compares the rest
/// with the seven annotations, ignoring case (Go's `EqualFold`).
fn annotation(line: &str) -> Option<std::result::Result<Annotation, String>> {
    if !line.trim().starts_with("--") || !line.contains("+goose") {
        return None;
    }
    if line.starts_with([' ', '\t']) {
        return Some(Err(
            "a goose annotation starts at the beginning of its line (goose refuses it indented)"
                .to_string(),
        ));
    }
    let command = line.replace("--", "").replacen("+goose", "", 1);
    if command.contains("+goose") {
        return Some(Err(
            "two +goose annotations on one line (goose refuses it)".to_string()
        ));
    }
    // EqualFold also folds the long s and the Kelvin sign onto ASCII.
    let command: String = command
        .trim()
        .chars()
        .map(|c| match c {
            'ſ' => 's',
            '\u{212A}' => 'k',
            c => c,
        })
        .collect();
    Some(
        ANNOTATIONS
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(&command))
            .map(|(_, annotation)| *annotation)
            .ok_or_else(|| {
                format!(
                    "unknown goose annotation {:?} (goose knows Up, Down, StatementBegin, StatementEnd, NO TRANSACTION, ENVSUB ON and ENVSUB OFF)",
                    line.trim()
                )
            }),
    )
}

/// goose's end of a statement outside a block: the line's last word before
/// any word starting with `--` ends in `;`.
fn ends_with_semicolon(line: &str) -> bool {
    line.split_whitespace()
        .take_while(|word| !word.starts_with("--"))
        .last()
        .is_some_and(|word| word.ends_with(';'))
}

/// A line goose puts in a statement even when no statement has started yet.
fn is_significant(line: &str) -> bool {
    let trimmed = line.trim();
    !trimmed.is_empty() && !trimmed.starts_with("--")
}

/// One statement as goose sends it.
#[derive(Debug)]
struct Statement {
    /// Byte range in the file, from its first line to the end of its last.
    start: usize,
    end: usize,
    first_line: usize,
    last_line: usize,
    /// The `StatementBegin` line of a block.
    block: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    /// Before `-- +goose Up`.
    Preamble,
    Up,
    Down,
}

/// A statement goose has started but not ended: its first line and offset.
#[derive(Debug, Clone, Copy)]
struct Started {
    line: usize,
    offset: usize,
}

/// The up section and the optional down section of the goose file at `path`.
pub fn parse_sections(path: &Path, text: &str) -> Result<(Section, Option<Section>)> {
    let err = |line: usize, message: String| invalid(path, line, message);
    let mut part = Part::Preamble;
    // (marker line, byte offset where the section's SQL starts)
    let mut up: Option<(usize, usize)> = None;
    let mut down: Option<(usize, usize)> = None;
    let mut up_end = text.len();
    let mut transactional = true;
    let mut envsub_on: Option<usize> = None;
    // A plain statement in progress, or the block in progress (its
    // StatementBegin line) and its first line of SQL.
    let mut plain: Option<Started> = None;
    let mut block: Option<(usize, Option<Started>)> = None;
    let mut statements: Vec<(Part, Statement)> = Vec::new();
    let mut offset = 0;

    for (index, raw) in text.split_inclusive('\n').enumerate() {
        let number = index + 1;
        let line_start = offset;
        offset += raw.len();
        let line = raw.strip_suffix('\n').unwrap_or(raw);
        let line = line.strip_suffix('\r').unwrap_or(line);
        let in_statement = plain.is_some() || block.is_some_and(|(_, started)| started.is_some());

        if let Some(found) = annotation(line) {
            let found = found.map_err(|message| err(number, message))?;
            match found {
                Annotation::Up => {
                    if let Some((first, _)) = up {
                        return Err(err(
                            number,
                            format!(
                                "a second -- +goose Up (the first is at line {first}); a file has one"
                            ),
                        ));
                    }
                    part = Part::Up;
                    up = Some((number, offset));
                }
                Annotation::Down => {
                    if let Some((begin, _)) = block {
                        return Err(err(
                            number,
                            format!(
                                "-- +goose Down inside the block begun at line {begin}; end the block with -- +goose StatementEnd first"
                            ),
                        ));
                    }
                    if let Some(started) = plain {
                        return Err(unfinished(path, started));
                    }
                    match part {
                        Part::Preamble => {
                            return Err(err(
                                number,
                                "-- +goose Down before -- +goose Up; goose needs the up section first"
                                    .to_string(),
                            ));
                        }
                        Part::Down => {
                            let first = down.map_or(0, |(line, _)| line);
                            return Err(err(
                                number,
                                format!(
                                    "a second -- +goose Down (the first is at line {first}); a file has one"
                                ),
                            ));
                        }
                        Part::Up => {}
                    }
                    part = Part::Down;
                    up_end = line_start;
                    down = Some((number, offset));
                }
                Annotation::StatementBegin => {
                    if part == Part::Preamble {
                        return Err(err(
                            number,
                            "-- +goose StatementBegin before -- +goose Up".to_string(),
                        ));
                    }
                    if let Some((begin, _)) = block {
                        return Err(err(
                            number,
                            format!(
                                "-- +goose StatementBegin inside the block begun at line {begin}; end that block with -- +goose StatementEnd first"
                            ),
                        ));
                    }
                    if let Some(started) = plain {
                        // goose would run that statement and the block as one.
                        return Err(unfinished(path, started));
                    }
                    block = Some((number, None));
                }
                Annotation::StatementEnd => {
                    let Some((begin, started)) = block.take() else {
                        return Err(err(
                            number,
                            "-- +goose StatementEnd without a -- +goose StatementBegin before it"
                                .to_string(),
                        ));
                    };
                    let Some(started) = started else {
                        // goose then drops the line after the block.
                        return Err(err(
                            begin,
                            format!(
                                "the block from line {begin} to line {number} holds no SQL; remove its StatementBegin and StatementEnd lines"
                            ),
                        ));
                    };
                    statements.push((
                        part,
                        Statement {
                            start: started.offset,
                            end: line_start,
                            first_line: started.line,
                            last_line: number - 1,
                            block: Some(begin),
                        },
                    ));
                }
                Annotation::NoTransaction | Annotation::EnvsubOn | Annotation::EnvsubOff => {
                    if in_statement {
                        return Err(err(
                            number,
                            format!(
                                "{} inside a statement: goose leaves the line out of the SQL it sends, orch runs the SQL as written; move the annotation before the statement",
                                line.trim()
                            ),
                        ));
                    }
                    match found {
                        Annotation::NoTransaction => transactional = false,
                        Annotation::EnvsubOn => envsub_on = Some(number),
                        _ => envsub_on = None,
                    }
                }
            }
            continue;
        }

        // A line goose puts in the statement it is reading.
        if !is_significant(line) && !in_statement {
            continue;
        }
        if part == Part::Preamble {
            return Err(err(
                number,
                "SQL before -- +goose Up would never run (goose refuses it); move it into a section"
                    .to_string(),
            ));
        }
        if let Some(on) = envsub_on
            && line.contains('$')
        {
            return Err(err(
                on,
                format!(
                    "-- +goose ENVSUB ON: goose replaces $VAR and ${{VAR}} with environment variables in the SQL after it, as it runs; orch runs the SQL as written, and line {number} has a `$`. Write the values into the SQL and remove the annotation (or, if nothing there is meant to be replaced, just remove the annotation)"
                ),
            ));
        }
        let started = Started {
            line: number,
            offset: line_start,
        };
        match &mut block {
            Some((_, first)) => {
                first.get_or_insert(started);
            }
            None => {
                let first = *plain.get_or_insert(started);
                if ends_with_semicolon(line) {
                    plain = None;
                    statements.push((
                        part,
                        Statement {
                            start: first.offset,
                            end: offset,
                            first_line: first.line,
                            last_line: number,
                            block: None,
                        },
                    ));
                }
            }
        }
    }

    if let Some((begin, _)) = block {
        return Err(err(
            begin,
            "-- +goose StatementBegin without a -- +goose StatementEnd after it".to_string(),
        ));
    }
    if let Some(started) = plain {
        return Err(unfinished(path, started));
    }
    let Some((up_marker, up_start)) = up else {
        return Err(err(
            1,
            "no -- +goose Up annotation (a goose migration needs one; run `orch migrate create NAME` for a template)"
                .to_string(),
        ));
    };

    for (_, statement) in &statements {
        check_statement(path, text, statement, transactional)?;
    }

    let section = |marker_line: usize, start: usize, end: usize| Section {
        path: path.to_path_buf(),
        sql: text[start..end].to_string(),
        marker_line,
        transactional,
        exact_columns: true,
    };
    let up_section = section(up_marker, up_start, up_end.max(up_start));
    let down_section = down.map(|(marker, start)| section(marker, start, text.len()));
    Ok((up_section, down_section))
}

/// A statement goose never saw the end of.
fn unfinished(path: &Path, started: Started) -> crate::error::Error {
    invalid(
        path,
        started.line,
        "this statement never ends: goose ends a statement at a line ending in `;` (outside -- +goose StatementBegin/StatementEnd), and no line after it does",
    )
}

/// Refuse a statement orch would not run the way goose does.
fn check_statement(
    path: &Path,
    text: &str,
    statement: &Statement,
    transactional: bool,
) -> Result<()> {
    let sql = &text[statement.start..statement.end];
    if !sql_text::ends_at_statement_boundary(sql) {
        let message = match statement.block {
            None => format!(
                "goose ends this statement at line {}, the first line ending in `;`, but the SQL is not complete there (a function body, string, comment or parenthesis is still open); put the whole statement between -- +goose StatementBegin and -- +goose StatementEnd lines",
                statement.last_line
            ),
            Some(begin) => format!(
                "the statement between -- +goose StatementBegin (line {begin}) and -- +goose StatementEnd (line {}) is not complete: end it with `;` and close its strings, dollar quotes, comments and parentheses",
                statement.last_line + 1
            ),
        };
        return Err(invalid(path, statement.first_line, message));
    }
    let count = sql_text::split_statements(sql).len();
    if !transactional && count > 1 {
        return Err(invalid(
            path,
            statement.first_line,
            format!(
                "in a -- +goose NO TRANSACTION migration goose sends lines {} to {} as one query, which PostgreSQL runs as one transaction, but they hold {count} statements, which orch would run one at a time; give each statement its own line(s) ending in `;` (or its own StatementBegin/StatementEnd block)",
                statement.first_line, statement.last_line
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<(Section, Option<Section>)> {
        parse_sections(Path::new("migrations/1_a.sql"), text)
    }

    fn statements(section: &Section) -> Vec<(usize, &str)> {
        sql_text::split_statements(&section.sql)
            .into_iter()
            .map(|s| (section.file_line(s.offset), s.text))
            .collect()
    }

    #[test]
    fn annotations_as_goose_reads_them() {
        let cases: &[(&str, Option<std::result::Result<Annotation, &str>>)] = &[
            ("-- +goose Up", Some(Ok(Annotation::Up))),
            ("-- +goose up", Some(Ok(Annotation::Up))),
            ("--+goose DOWN", Some(Ok(Annotation::Down))),
            ("-- +goose Up --", Some(Ok(Annotation::Up))),
            (
                "-- +goose statementbegin",
                Some(Ok(Annotation::StatementBegin)),
            ),
            (
                "-- +goose StatementEnd  ",
                Some(Ok(Annotation::StatementEnd)),
            ),
            (
                "-- +goose no transaction",
                Some(Ok(Annotation::NoTransaction)),
            ),
            ("-- +goose ENVSUB ON", Some(Ok(Annotation::EnvsubOn))),
            ("-- +goose envsub off", Some(Ok(Annotation::EnvsubOff))),
            (
                "-- +goose ſtatementbegin",
                Some(Ok(Annotation::StatementBegin)),
            ),
            ("  -- +goose Up", Some(Err("beginning of its line"))),
            ("-- +goose Up +goose Down", Some(Err("two +goose"))),
            ("-- +goose Sideways", Some(Err("unknown goose annotation"))),
            (
                "-- +goose NO  TRANSACTION",
                Some(Err("unknown goose annotation")),
            ),
            (
                "-- see the +goose docs",
                Some(Err("unknown goose annotation")),
            ),
            ("-- +GOOSE Up", None),
            ("SELECT 1; -- +goose Up", None),
            ("-- plain comment", None),
        ];
        for (line, expected) in cases {
            let got = annotation(line);
            match (got, expected) {
                (None, None) => {}
                (Some(Ok(a)), Some(Ok(b))) => assert_eq!(a, *b, "{line:?}"),
                (Some(Err(message)), Some(Err(part))) => {
                    assert!(message.contains(part), "{line:?}: {message}")
                }
                (got, _) => panic!("{line:?}: {got:?}, expected {expected:?}"),
            }
        }
    }

    #[test]
    fn statement_ends_as_goose_sees_them() {
        assert!(ends_with_semicolon("SELECT 1;"));
        assert!(ends_with_semicolon("SELECT 1; -- done"));
        assert!(ends_with_semicolon("  ;  "));
        assert!(!ends_with_semicolon("SELECT 1 -- x;"));
        assert!(!ends_with_semicolon("SELECT 1 /* ; */"));
        assert!(!ends_with_semicolon(""));
    }

    #[test]
    fn sections_statements_and_lines() {
        let (up, down) = parse(
            "-- a comment before\n\n-- +goose Up\nCREATE TABLE post (\n    id int NOT NULL\n);\nSELECT 1;\n\n-- +goose Down\nDROP TABLE post;\n",
        )
        .unwrap();
        assert_eq!(up.marker_line, 3);
        assert!(up.transactional);
        assert_eq!(
            statements(&up),
            [
                (4, "CREATE TABLE post (\n    id int NOT NULL\n)"),
                (7, "SELECT 1")
            ]
        );
        let down = down.unwrap();
        assert_eq!(down.marker_line, 9);
        assert_eq!(statements(&down), [(10, "DROP TABLE post")]);
        assert_eq!(down.path, up.path);

        let (up, down) = parse("-- +goose Up\nSELECT 1;\n").unwrap();
        assert_eq!(statements(&up), [(2, "SELECT 1")]);
        assert!(down.is_none());
        let (_, down) = parse("-- +goose Up\nSELECT 1;\n-- +goose Down\n").unwrap();
        assert!(down.unwrap().is_empty());
    }

    #[test]
    fn statement_blocks_are_one_statement() {
        let text = "-- +goose Up\n-- +goose StatementBegin\nCREATE FUNCTION f() RETURNS trigger AS $$\nBEGIN\n  NEW.at = now();\n  RETURN NEW;\nEND;\n$$ LANGUAGE plpgsql;\n-- +goose StatementEnd\n\n-- +goose Down\n-- +goose StatementBegin\nDROP FUNCTION f();\n-- +goose StatementEnd\n";
        let (up, down) = parse(text).unwrap();
        let up = statements(&up);
        assert_eq!(up.len(), 1);
        assert_eq!(up[0].0, 3);
        assert!(up[0].1.ends_with("$$ LANGUAGE plpgsql"));
        assert_eq!(statements(&down.unwrap()), [(13, "DROP FUNCTION f()")]);
    }

    #[test]
    fn no_transaction_applies_to_both_sections() {
        let (up, down) = parse(
            "-- +goose NO TRANSACTION\n-- +goose Up\nCREATE INDEX CONCURRENTLY i ON t (a);\n-- +goose Down\nDROP INDEX CONCURRENTLY i;\n",
        )
        .unwrap();
        assert!(!up.transactional);
        assert!(!down.unwrap().transactional);
        // Anywhere outside a statement, even in the down section.
        let (up, _) =
            parse("-- +goose Up\nSELECT 1;\n-- +goose Down\n-- +goose NO TRANSACTION\n").unwrap();
        assert!(!up.transactional);
    }

    #[test]
    fn envsub_is_ignored_only_where_it_changes_nothing() {
        let (up, _) =
            parse("-- +goose ENVSUB ON\n-- +goose Up\nSELECT 1;\n-- +goose ENVSUB OFF\n").unwrap();
        assert_eq!(statements(&up), [(3, "SELECT 1")]);
        let (up, _) = parse(
            "-- +goose Up\n-- +goose ENVSUB ON\nSELECT 1;\n-- +goose ENVSUB OFF\nSELECT '$HOME';\n",
        )
        .unwrap();
        assert_eq!(statements(&up).len(), 2);
        let err = parse("-- +goose ENVSUB ON\n-- +goose Up\nSELECT '${REGION}';\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("migrations/1_a.sql:1: -- +goose ENVSUB ON: goose replaces"),
            "{err}"
        );
        assert!(err.contains("line 3 has a `$`"), "{err}");
    }

    #[test]
    fn refusals_name_file_and_line() {
        let cases: &[(&str, &str)] = &[
            ("SELECT 1;\n", "1_a.sql:1: SQL before -- +goose Up"),
            (
                "-- just a comment\n",
                "1_a.sql:1: no -- +goose Up annotation",
            ),
            (
                "-- +goose Up\nSELECT 1;\n-- +goose Up\n",
                "1_a.sql:3: a second -- +goose Up (the first is at line 1)",
            ),
            (
                "-- +goose Up\n-- +goose Down\n-- +goose Down\n",
                "1_a.sql:3: a second -- +goose Down",
            ),
            (
                "-- +goose Down\nSELECT 1;\n",
                "1_a.sql:1: -- +goose Down before",
            ),
            (
                "-- +goose Up\nSELECT 1\n-- +goose Down\n",
                "1_a.sql:2: this statement never ends",
            ),
            (
                "-- +goose Up\nSELECT 1\n",
                "1_a.sql:2: this statement never ends",
            ),
            (
                "-- +goose Up\nSELECT 1\n-- +goose StatementBegin\nSELECT 2;\n-- +goose StatementEnd\n",
                "1_a.sql:2: this statement never ends",
            ),
            (
                "-- +goose Up\n-- +goose StatementBegin\nSELECT 1;\n",
                "1_a.sql:2: -- +goose StatementBegin without a -- +goose StatementEnd",
            ),
            (
                "-- +goose Up\n-- +goose StatementEnd\n",
                "1_a.sql:2: -- +goose StatementEnd without",
            ),
            (
                "-- +goose Up\n-- +goose StatementBegin\n-- +goose StatementBegin\n",
                "1_a.sql:3: -- +goose StatementBegin inside the block begun at line 2",
            ),
            (
                "-- +goose Up\n-- +goose StatementBegin\nSELECT 1;\n-- +goose Down\n",
                "1_a.sql:4: -- +goose Down inside the block",
            ),
            (
                "-- +goose Up\n-- +goose StatementBegin\n-- +goose StatementEnd\nSELECT 1;\n",
                "1_a.sql:2: the block from line 2 to line 3 holds no SQL",
            ),
            (
                "-- +goose StatementBegin\n",
                "1_a.sql:1: -- +goose StatementBegin before -- +goose Up",
            ),
            (
                "  -- +goose Up\nSELECT 1;\n",
                "1_a.sql:1: a goose annotation starts at the beginning",
            ),
            (
                "-- +goose Up\nCREATE TABLE t (\n-- +goose NO TRANSACTION\na int);\n",
                "1_a.sql:3: -- +goose NO TRANSACTION inside a statement",
            ),
            (
                "-- +goose Up\n-- +goose StatementBegin\nDO $$\n-- +goose ENVSUB OFF\n$$;\n-- +goose StatementEnd\n",
                "1_a.sql:4: -- +goose ENVSUB OFF inside a statement",
            ),
            (
                // The classic mistake: a function body without a block.
                "-- +goose Up\nCREATE FUNCTION f() RETURNS int AS $$\nBEGIN\n  RETURN 1;\nEND;\n$$ LANGUAGE plpgsql;\n",
                "1_a.sql:2: goose ends this statement at line 4",
            ),
            (
                "-- +goose Up\n-- +goose StatementBegin\nCREATE FUNCTION f() RETURNS int AS $$ SELECT 1 $$ LANGUAGE sql\n-- +goose StatementEnd\nSELECT 2;\n",
                "1_a.sql:3: the statement between -- +goose StatementBegin (line 2) and -- +goose StatementEnd (line 4) is not complete",
            ),
            (
                "-- +goose NO TRANSACTION\n-- +goose Up\nCREATE INDEX CONCURRENTLY a ON t (a); CREATE INDEX CONCURRENTLY b ON t (b);\n",
                "1_a.sql:3: in a -- +goose NO TRANSACTION migration goose sends lines 3 to 3 as one query",
            ),
        ];
        for (text, expected) in cases {
            let err = parse(text).unwrap_err().to_string();
            assert!(
                err.contains(expected),
                "{text:?}: {err:?} should contain {expected:?}"
            );
        }
    }

    #[test]
    fn several_statements_in_one_goose_statement_are_fine_in_a_transaction() {
        let (up, _) = parse("-- +goose Up\nSELECT 1; SELECT 2;\n").unwrap();
        assert_eq!(statements(&up).len(), 2);
    }
}
