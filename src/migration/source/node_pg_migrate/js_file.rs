//! node-pg-migrate's JavaScript (and TypeScript) migrations, of the one
//! plain shape orch reads without running JavaScript: `up` and `down`
//! functions whose bodies only call `pgm.sql(...)` with SQL written out (a
//! template literal without `${...}`, or a string) and
//! `pgm.noTransaction()`. They may be exported CommonJS-style
//! (`exports.up = ...`, `module.exports.up = ...`, as node-pg-migrate 7
//! writes them) or as ES modules (`export const up = ...`, `export function
//! up`, as version 8 writes them); `exports.shorthands = undefined` (its
//! template) is allowed, `exports.down = false` means no down migration.
//! Anything else is refused at its line, with how to convert it.
//!
//! Each `pgm.sql` call is one query for node-pg-migrate (which appends a `;`
//! to SQL that does not end with one); orch joins them into one section,
//! each at its own line of the file.

use std::path::Path;

use super::js_exports::{self, CONVERT, Function, Value};
use super::js_lexer::{Kind, Token};
use crate::error::Result;
use crate::migration::file::{NOTHING_TO_UNDO, Section, invalid};
use crate::sql_text;

/// The up section and the optional down section of the JavaScript (or, with
/// `typescript`, TypeScript) file at `path`.
pub fn parse_sections(
    path: &Path,
    text: &str,
    typescript: bool,
) -> Result<(Section, Option<Section>)> {
    let (exports, comments) = js_exports::read(path, text, typescript)?;
    let mut up = None;
    let mut down = None;
    for export in exports {
        match (export.name.as_str(), export.value) {
            ("up", Value::Function(function)) => up = Some(function),
            ("up", _) => {
                return Err(invalid(
                    path,
                    export.line,
                    "up is not a function here: node-pg-migrate cannot run this migration up",
                ));
            }
            ("down", Value::Function(function)) => down = Some(function),
            // `false`: no down migration; not there: node-pg-migrate infers
            // one by reversing up, which it cannot do for pgm.sql.
            ("down", Value::False | Value::Undefined) => {}
            ("down", _) => {
                return Err(invalid(
                    path,
                    export.line,
                    "down is neither a function nor false (no down migration)",
                ));
            }
            ("shorthands", Value::Undefined | Value::Null | Value::EmptyObject) => {}
            ("shorthands", _) => {
                return Err(invalid(
                    path,
                    export.line,
                    "orch reads `shorthands = undefined` only: shorthands serve pgm.createTable and the other builders, which orch does not read",
                ));
            }
            (other, _) => {
                return Err(invalid(
                    path,
                    export.line,
                    format!(
                        "an export named {other:?}: orch reads only up, down and shorthands; remove it"
                    ),
                ));
            }
        }
    }
    let up = up.ok_or_else(|| {
        invalid(
            path,
            1,
            format!("no up function exported (node-pg-migrate needs one); {CONVERT}"),
        )
    })?;
    let up = section(path, &up, &comments)?;
    let down = down
        .map(|function| section(path, &function, &comments))
        .transpose()?;
    Ok((up, down))
}

/// The section a function runs: its `pgm.sql` texts, each starting at the
/// line of its literal in the file.
fn section(path: &Path, function: &Function, comments: &[Token]) -> Result<Section> {
    let transactional = !function.no_transaction;
    let Some((_, first_line)) = function.sql.first() else {
        // No SQL: a down function may say it is empty on purpose.
        let says = comments.iter().find(|c| {
            c.start > function.body.0 && c.start < function.body.1 && says_nothing_to_undo(c)
        });
        return Ok(Section {
            path: path.to_path_buf(),
            sql: says.map_or_else(String::new, |_| format!("-- {NOTHING_TO_UNDO}\n")),
            marker_line: says.map_or(function.body_line, |c| c.line - 1),
            transactional,
            exact_columns: false,
        });
    };
    let marker_line = first_line - 1;
    let mut sql = String::new();
    for (index, (text, line)) in function.sql.iter().enumerate() {
        // node-pg-migrate ends each text with `;` unless it does already.
        let mut step = text.clone();
        if !step.is_empty() && !step.ends_with(';') {
            step.push(';');
        }
        let separate = if sql_text::ends_at_statement_boundary(&step) {
            false
        } else if sql_text::ends_at_statement_boundary(&format!("{step}\n;")) {
            // It ends in a comment that took the `;`: a query by itself
            // ends there, orch's script needs a `;` on the next line.
            true
        } else {
            return Err(invalid(
                path,
                *line,
                "the SQL of this pgm.sql(...) ends inside a string, quoted name, dollar quote, comment or parenthesis, so PostgreSQL would refuse it; close it",
            ));
        };
        if index > 0 {
            // Each text at its own line, as far as the texts before allow.
            let at_line = marker_line + 1 + sql.matches('\n').count();
            let mut newlines = line.saturating_sub(at_line);
            if newlines == 0 && ends_in_line_comment(&sql) {
                newlines = 1;
            }
            sql.push_str(&"\n".repeat(newlines));
        }
        sql.push_str(&step);
        if separate {
            sql.push_str("\n;");
        }
    }
    Ok(Section {
        path: path.to_path_buf(),
        sql,
        marker_line,
        transactional,
        // Each text starts where its literal does, mid-line, and escapes
        // in it are shorter than in the file: lines match, columns do not.
        exact_columns: false,
    })
}

/// `// nothing to undo` (or `/* Nothing to undo. */`): the JavaScript
/// comment that marks an empty down function as meant.
fn says_nothing_to_undo(comment: &Token) -> bool {
    let Kind::Comment(text) = &comment.kind else {
        return false;
    };
    text.trim()
        .trim_matches('*')
        .trim()
        .trim_end_matches('.')
        .eq_ignore_ascii_case(NOTHING_TO_UNDO)
}

/// Whether what follows `sql` on its last line would be a comment.
fn ends_in_line_comment(sql: &str) -> bool {
    const PROBE: &str = "SELECT 'orch: probe'";
    let probed = format!("{sql} {PROBE}");
    sql_text::split_statements(&probed)
        .last()
        .is_none_or(|last| last.text != PROBE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<(Section, Option<Section>)> {
        parse_sections(Path::new("migrations/1700000000000_a.js"), text, false)
    }

    fn statements(section: &Section) -> Vec<(usize, &str)> {
        sql_text::split_statements(&section.sql)
            .into_iter()
            .map(|s| (section.file_line(s.offset), s.text))
            .collect()
    }

    /// The shapes node-pg-migrate's documentation and templates use.
    #[test]
    fn accepted_shapes() {
        let sources = [
            "exports.up = pgm => {\n  pgm.sql(`CREATE TABLE t (a int)`);\n};\nexports.down = pgm => {\n  pgm.sql(`DROP TABLE t`);\n};\n",
            "/* eslint-disable camelcase */\n\nexports.shorthands = undefined;\n\nexports.up = (pgm) => {\n  pgm.sql(\"CREATE TABLE t (a int)\")\n}\n\nexports.down = (pgm) => {\n  pgm.sql('DROP TABLE t')\n}\n",
            "'use strict';\nexports.up = function (pgm) {\n  pgm.sql(`CREATE TABLE t (a int)`);\n};\nexports.down = function down(pgm) {\n  pgm.sql(`DROP TABLE t`);\n};\n",
            "module.exports.up = async (pgm) => {\n  await pgm.sql(`CREATE TABLE t (a int)`);\n};\nmodule.exports.down = async function (pgm) {\n  pgm.sql(`DROP TABLE t`);\n};\n",
            "export const shorthands = undefined;\nexport const up = (pgm) =>\n  pgm.sql(`CREATE TABLE t (a int)`);\nexport async function down(pgm) {\n  pgm.sql(`DROP TABLE t`);\n}\n",
            "exports.up = (pgm, run) => {\n  pgm.sql(`CREATE TABLE t (a int)`);\n  run();\n};\nexports.down = (pgm, run) => { pgm.sql(`DROP TABLE t`); run(); };\n",
        ];
        for source in sources {
            let (up, down) = parse(source).unwrap_or_else(|e| panic!("{source}\n{e}"));
            assert_eq!(statements(&up)[0].1, "CREATE TABLE t (a int)", "{source}");
            assert!(up.transactional);
            let down = down.unwrap();
            assert_eq!(statements(&down)[0].1, "DROP TABLE t", "{source}");
        }
    }

    #[test]
    fn typescript_of_the_template_shape() {
        let source = "import { ColumnDefinitions, MigrationBuilder } from 'node-pg-migrate';\n\nexport const shorthands: ColumnDefinitions | undefined = undefined;\n\nexport async function up(pgm: MigrationBuilder): Promise<void> {\n  pgm.sql(`CREATE TABLE t (a int)`);\n}\n\nexport const down = async (pgm: MigrationBuilder): Promise<void> => {\n  pgm.sql(`DROP TABLE t`);\n};\n";
        let path = Path::new("migrations/1700000000000_a.ts");
        let (up, down) = parse_sections(path, source, true).unwrap();
        assert_eq!(statements(&up), [(6, "CREATE TABLE t (a int)")]);
        assert_eq!(statements(&down.unwrap()), [(10, "DROP TABLE t")]);
        // Not in JavaScript.
        let err = parse(source).unwrap_err().to_string();
        assert!(
            err.contains("1700000000000_a.js:1: `import` at the top level"),
            "{err}"
        );
        let err = parse_sections(path, "import { x } from './helpers';\n", true)
            .unwrap_err()
            .to_string();
        assert!(err.contains(":1: an import of other code"), "{err}");
    }

    #[test]
    fn several_calls_keep_their_lines_and_no_transaction() {
        let source = "exports.up = (pgm) => {\n  pgm.noTransaction();\n  pgm.sql(`\n    CREATE INDEX CONCURRENTLY a ON t (a);\n  `);\n\n  pgm.sql(`CREATE INDEX CONCURRENTLY b ON t (b) -- last`);\n  pgm.sql(`SELECT 1`); pgm.sql(`SELECT 2`);\n};\nexports.down = false;\n";
        let (up, down) = parse(source).unwrap();
        assert!(!up.transactional);
        assert!(down.is_none());
        assert_eq!(
            statements(&up),
            [
                (4, "CREATE INDEX CONCURRENTLY a ON t (a)"),
                (7, "CREATE INDEX CONCURRENTLY b ON t (b)"),
                (8, "SELECT 1"),
                (8, "SELECT 2"),
            ]
        );
        // A text ending in a comment does not swallow the next one.
        let (up, _) =
            parse("exports.up = (pgm) => { pgm.sql(`SELECT 1 -- one`); pgm.sql(`SELECT 2`) };\n")
                .unwrap();
        assert_eq!(statements(&up), [(1, "SELECT 1"), (2, "SELECT 2")]);
        let (up, _) =
            parse("exports.up = (pgm) => { pgm.sql(`SELECT 1; -- one`); pgm.sql(`SELECT 2`) };\n")
                .unwrap();
        assert_eq!(statements(&up), [(1, "SELECT 1"), (2, "SELECT 2")]);
    }

    #[test]
    fn empty_functions_and_missing_down() {
        let (up, down) = parse("exports.up = (pgm) => {};\n").unwrap();
        assert!(up.is_empty() && down.is_none());
        let (_, down) = parse(
            "exports.up = (pgm) => { pgm.sql(`SELECT 1`) };\nexports.down = (pgm) => {\n  // Nothing to undo.\n};\n",
        )
        .unwrap();
        let down = down.unwrap();
        assert!(down.says_nothing_to_undo());
        assert_eq!(down.marker_line, 2);
        let (_, down) =
            parse("exports.up = (pgm) => { pgm.sql(`SELECT 1`) };\nexports.down = (pgm) => {};\n")
                .unwrap();
        assert!(!down.unwrap().says_nothing_to_undo());
    }

    #[test]
    fn refusals_of_what_the_exports_are() {
        let cases: &[(&str, &str)] = &[
            ("exports.down = false;\n", ":1: no up function exported"),
            ("exports.up = false;\n", ":1: up is not a function here"),
            (
                "exports.up = (pgm) => {}; exports.seed = (pgm) => {};\n",
                ":1: an export named \"seed\"",
            ),
            (
                "exports.up = (pgm) => {\n  pgm.sql(`SELECT 'open`);\n};\n",
                ":2: the SQL of this pgm.sql(...) ends inside a string",
            ),
        ];
        for (source, expected) in cases {
            let err = parse(source).unwrap_err().to_string();
            assert!(
                err.contains(&format!("migrations/1700000000000_a.js{expected}")),
                "{source:?}: {err:?} should contain {expected:?}"
            );
        }
    }
}
