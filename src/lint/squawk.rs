//! The adapter over squawk (squawk-syntax's PostgreSQL parser, and
//! squawk-linter's knowledge of which defaults are volatile): SQL text in,
//! orch's statement model (`lint/model.rs`) and syntax errors out. No other
//! file of orch names a squawk type.

use squawk_linter::{Linter as SquawkLinter, Rule as SquawkRule};
use squawk_syntax::ast::{self, AstNode};
use squawk_syntax::{SourceFile, SyntaxKind, SyntaxNode};

use crate::lint::model::{
    Action, ActionKind, AddColumn, AddConstraint, ConstraintKind, Name, Parsed, ReindexTarget,
    Statement, StatementKind, SyntaxProblem,
};

/// Parse one section's SQL.
pub fn parse(sql: &str) -> Parsed {
    let parse = SourceFile::parse(sql);
    let mut syntax: Vec<SyntaxProblem> = Vec::new();
    for e in parse.errors() {
        let offset = usize::from(e.range().start());
        // The parser may say several things at one place; the first is
        // what went wrong there.
        if syntax.last().is_none_or(|last| last.offset != offset) {
            syntax.push(SyntaxProblem {
                offset,
                message: e.message().to_string(),
            });
        }
    }
    // squawk-linter knows which built-in functions are not volatile (a
    // constant default adds a column without a rewrite since PostgreSQL 11).
    let rewriting_defaults: Vec<usize> = SquawkLinter::from([SquawkRule::AddingFieldWithDefault])
        .lint(&parse, sql)
        .into_iter()
        .map(|v| usize::from(v.text_range.start()))
        .collect();
    let statements = parse
        .tree()
        .stmts()
        .map(|stmt| Statement {
            offset: start(stmt.syntax()),
            end: end(stmt.syntax()),
            kind: kind(&stmt, &rewriting_defaults),
        })
        .collect();
    Parsed { statements, syntax }
}

/// Where a node's first non-trivia token starts.
fn start(node: &SyntaxNode) -> usize {
    node.descendants_with_tokens()
        .filter_map(|e| e.into_token())
        .find(|t| !t.kind().is_trivia())
        .map_or_else(
            || usize::from(node.text_range().start()),
            |t| usize::from(t.text_range().start()),
        )
}

/// Where a node's last non-trivia token ends (a comment after a statement
/// belongs to the next one: that is where `-- orch:allow` goes).
fn end(node: &SyntaxNode) -> usize {
    node.descendants_with_tokens()
        .filter_map(|e| e.into_token())
        .filter(|t| !t.kind().is_trivia())
        .last()
        .map_or_else(
            || usize::from(node.text_range().end()),
            |t| usize::from(t.text_range().end()),
        )
}

/// An identifier as PostgreSQL reads it: quoted kept, unquoted folded.
fn ident(text: &str) -> String {
    let text = text.trim();
    match text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        Some(quoted) => quoted.replace("\"\"", "\""),
        None => text.to_ascii_lowercase(),
    }
}

/// The dotted name inside `node` (a table, index or constraint reference).
fn name_in(node: &SyntaxNode) -> Option<Name> {
    let path = node
        .descendants()
        .find(|n| matches!(n.kind(), SyntaxKind::PATH | SyntaxKind::PATH_REF))?;
    let parts: Vec<String> = path
        .descendants()
        .filter(|n| {
            matches!(
                n.kind(),
                SyntaxKind::PATH_SEGMENT | SyntaxKind::PATH_SEGMENT_REF
            )
        })
        .map(|n| ident(&n.text().to_string()))
        .collect();
    match parts.as_slice() {
        [] => None,
        [name] => Some(Name::new(None, name)),
        [.., schema, name] => Some(Name::new(Some(schema), name)),
    }
}

fn text(node: &SyntaxNode) -> String {
    node.text()
        .to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn kind(stmt: &ast::Stmt, rewriting_defaults: &[usize]) -> StatementKind {
    use ast::Stmt;
    let named = |node: Option<SyntaxNode>| node.as_ref().and_then(name_in);
    match stmt {
        Stmt::CreateTable(create) => {
            let Some(table) = named(create.table_name().map(|t| t.syntax().clone())) else {
                return StatementKind::Other;
            };
            let columns = create
                .table_arg_list()
                .map(|list| {
                    list.args()
                        .filter_map(|arg| match arg {
                            ast::TableArg::Column(column) => Some((
                                ident(&column.name()?.syntax().text().to_string()),
                                column.ty().map(|t| text(t.syntax())).unwrap_or_default(),
                            )),
                            _ => None,
                        })
                        .collect()
                })
                .unwrap_or_default();
            StatementKind::CreateTable { table, columns }
        }
        // Filled, unlike a plain CREATE TABLE, but no other session sees
        // it before the migration commits, and the application still
        // running does not use it: locking it blocks nobody.
        Stmt::CreateTableAs(create) => match named(create.table_name().map(|t| t.syntax().clone()))
        {
            Some(table) => StatementKind::CreateTable {
                table,
                columns: Vec::new(),
            },
            None => StatementKind::Other,
        },
        // Likewise a materialized view: created and filled in this
        // transaction, seen by no other session until it commits.
        Stmt::CreateMaterializedView(create) => match named(Some(create.syntax().clone())) {
            Some(table) => StatementKind::CreateTable {
                table,
                columns: Vec::new(),
            },
            None => StatementKind::Other,
        },
        Stmt::CreateIndex(create) => {
            match named(create.table_relation_name().map(|t| t.syntax().clone())) {
                Some(table) => StatementKind::CreateIndex {
                    table,
                    name: named(create.index().map(|n| n.syntax().clone())).or_else(|| {
                        // `CREATE INDEX name ON ...`: the name node may be
                        // a plain NAME rather than a path.
                        create
                            .index()
                            .map(|n| Name::new(None, &ident(&n.syntax().text().to_string())))
                    }),
                    concurrently: create.concurrently_token().is_some(),
                },
                None => StatementKind::Other,
            }
        }
        Stmt::DropIndex(drop) => StatementKind::DropIndex {
            indexes: drop
                .index_refs()
                .filter_map(|i| name_in(i.syntax()))
                .collect(),
            concurrently: drop.concurrently_token().is_some(),
        },
        Stmt::Reindex(reindex) => {
            let concurrently = reindex
                .reindex_target()
                .is_some_and(|t| t.concurrently_token().is_some())
                || reindex.reindex_option_list().is_some_and(|list| {
                    list.reindex_options()
                        .any(|o| matches!(o, ast::ReindexOption::ReindexOptionConcurrently(_)))
                });
            let target = match reindex.reindex_target() {
                Some(ast::ReindexTarget::ReindexTargetTable(t)) => t
                    .table_name_ref()
                    .and_then(|n| name_in(n.syntax()))
                    .map(ReindexTarget::Table),
                Some(ast::ReindexTarget::ReindexTargetIndex(i)) => i
                    .index_ref()
                    .and_then(|n| name_in(n.syntax()))
                    .map(ReindexTarget::Index),
                Some(other) => Some(ReindexTarget::Wide(text(other.syntax()))),
                None => None,
            };
            match target {
                Some(target) => StatementKind::Reindex {
                    target,
                    concurrently,
                },
                None => StatementKind::Other,
            }
        }
        Stmt::AlterTable(alter) => {
            match named(alter.table_relation_name().map(|t| t.syntax().clone())) {
                Some(table) => StatementKind::AlterTable {
                    table,
                    actions: alter
                        .actions()
                        .map(|a| Action {
                            offset: start(a.syntax()),
                            kind: action(&a, rewriting_defaults),
                        })
                        .collect(),
                },
                None => StatementKind::Other,
            }
        }
        Stmt::DropTable(drop) => StatementKind::DropTable {
            tables: drop
                .table_name_refs()
                .filter_map(|t| name_in(t.syntax()))
                .collect(),
        },
        Stmt::Vacuum(vacuum) => StatementKind::Vacuum {
            full: vacuum.is_full(),
            tables: vacuum
                .table_and_columns_list()
                .map(|list| {
                    list.table_and_columnss()
                        .filter_map(|t| name_in(t.syntax()))
                        .collect()
                })
                .unwrap_or_default(),
        },
        Stmt::Cluster(cluster) => StatementKind::Cluster {
            table: cluster
                .table_name_ref()
                .and_then(|t| name_in(t.syntax()))
                .or_else(|| {
                    cluster
                        .cluster_legacy()
                        .and_then(|l| l.on_path())
                        .and_then(|p| name_in(p.syntax()))
                }),
        },
        Stmt::Lock(lock) => StatementKind::Lock {
            tables: lock
                .relation_list()
                .map(|list| {
                    list.relation_names()
                        .filter_map(|r| name_in(r.syntax()))
                        .collect()
                })
                .unwrap_or_default(),
            mode: lock
                .lock_mode_clause()
                .and_then(|c| c.lock_mode())
                .map_or_else(
                    || "ACCESS EXCLUSIVE".to_string(),
                    |m| text(m.syntax()).to_ascii_uppercase(),
                ),
        },
        Stmt::Update(update) => match named(update.relation_name().map(|r| r.syntax().clone())) {
            Some(table) => StatementKind::Write {
                verb: "UPDATE",
                table,
                whole_table: every_row(update.where_clause_or_current_of()),
            },
            None => StatementKind::Other,
        },
        Stmt::Delete(delete) => match named(delete.relation_name().map(|r| r.syntax().clone())) {
            Some(table) => StatementKind::Write {
                verb: "DELETE",
                table,
                whole_table: every_row(delete.where_clause_or_current_of()),
            },
            None => StatementKind::Other,
        },
        Stmt::Set(set) => match time_zone_set(&text(set.syntax())) {
            Some(utc) => StatementKind::SetTimeZone { utc },
            None => StatementKind::Other,
        },
        // RESET timezone / RESET ALL: back to the server's zone, unknown.
        Stmt::Reset(reset) => {
            let words = text(reset.syntax()).to_ascii_lowercase();
            if ["timezone", "time zone", " all"]
                .iter()
                .any(|w| words.contains(w))
            {
                StatementKind::SetTimeZone { utc: false }
            } else {
                StatementKind::Other
            }
        }
        _ => StatementKind::Other,
    }
}

/// A USING expression that is the column itself, perhaps cast to the new
/// type: what PostgreSQL computes without USING.
fn is_plain_conversion(expr: &str, column: &str, ty: &str) -> bool {
    let expr = expr.trim();
    let expr = expr
        .strip_prefix('(')
        .and_then(|e| e.strip_suffix(')'))
        .unwrap_or(expr)
        .trim();
    let (value, cast) = match expr.split_once("::") {
        Some((value, cast)) => (value.trim(), Some(cast.trim())),
        None => (expr, None),
    };
    ident(value) == column && cast.is_none_or(|c| c.eq_ignore_ascii_case(ty.trim()))
}

/// No WHERE, or one that holds for every row (`WHERE true`, `WHERE 1 = 1`).
fn every_row(clause: Option<ast::WhereClauseOrCurrentOf>) -> bool {
    match clause {
        None => true,
        Some(ast::WhereClauseOrCurrentOf::WhereClause(w)) => w.expr().is_some_and(|e| {
            let mut words = text(e.syntax()).to_ascii_lowercase().replace(' ', "");
            while let Some(inner) = words.strip_prefix('(').and_then(|w| w.strip_suffix(')')) {
                words = inner.to_string();
            }
            matches!(
                words.as_str(),
                "true" | "'t'" | "'true'" | "1=1" | "true=true" | "notfalse"
            )
        }),
        Some(_) => false,
    }
}

/// For `SET [SESSION | LOCAL] TIME ZONE x` / `SET timezone [TO | =] x`
/// (text as `text` joins it): whether x is a zone at offset 0 without
/// daylight saving, as PostgreSQL's check for a rewrite-free
/// timestamp <-> timestamptz change asks. None for any other SET.
pub(crate) fn time_zone_set(statement: &str) -> Option<bool> {
    let lower = statement.trim().trim_end_matches(';').to_ascii_lowercase();
    let rest = lower.strip_prefix("set ")?.trim_start();
    let rest = rest
        .strip_prefix("session ")
        .or_else(|| rest.strip_prefix("local "))
        .unwrap_or(rest)
        .trim_start();
    let value = if let Some(v) = rest.strip_prefix("time zone") {
        v
    } else {
        let v = rest.strip_prefix("timezone")?;
        let v = v.trim_start();
        v.strip_prefix("to")
            .filter(|after| after.starts_with([' ', '\'', '"']))
            .or_else(|| v.strip_prefix('='))
            .unwrap_or(v)
    };
    let zone = value.trim().trim_matches(|c| c == '\'' || c == '"').trim();
    Some(matches!(
        zone,
        "utc"
            | "etc/utc"
            | "uct"
            | "etc/uct"
            | "gmt"
            | "etc/gmt"
            | "gmt0"
            | "etc/gmt0"
            | "etc/gmt+0"
            | "etc/gmt-0"
            | "greenwich"
            | "etc/greenwich"
            | "universal"
            | "etc/universal"
            | "zulu"
            | "etc/zulu"
            | "utc0"
            | "0"
            | "+0"
            | "interval '0'"
    ))
}

fn action(action: &ast::AlterTableAction, rewriting_defaults: &[usize]) -> ActionKind {
    use ast::AlterTableAction as A;
    match action {
        A::AddColumn(add) => {
            let range = add.syntax().text_range();
            // A serial type is a nextval() default: volatile, a rewrite.
            let serial = add.ty().filter(|t| {
                matches!(
                    text(t.syntax()).to_ascii_lowercase().as_str(),
                    "serial" | "bigserial" | "smallserial" | "serial2" | "serial4" | "serial8"
                )
            });
            let rewrite_at = rewriting_defaults
                .iter()
                .copied()
                .find(|at| range.contains(u32::try_from(*at).unwrap_or(u32::MAX).into()))
                .or_else(|| serial.map(|t| start(t.syntax())));
            let mut column = AddColumn {
                column: add
                    .column_name()
                    .map(|c| ident(&c.syntax().text().to_string()))
                    .unwrap_or_default(),
                ty: add.ty().map(|t| text(t.syntax())).unwrap_or_default(),
                not_null: false,
                has_default: false,
                rewrite_at,
                constraints: Vec::new(),
            };
            for constraint in add.constraints() {
                let at = start(constraint.syntax());
                match &constraint {
                    ast::Constraint::NotNullConstraint(_) => column.not_null = true,
                    ast::Constraint::DefaultConstraint(_) => column.has_default = true,
                    ast::Constraint::GeneratedConstraint(_) => column.has_default = true,
                    ast::Constraint::PrimaryKeyConstraint(_) => {
                        column.not_null = true;
                        column.constraints.push((ConstraintKind::PrimaryKey, at));
                    }
                    ast::Constraint::UniqueConstraint(_) => {
                        column.constraints.push((ConstraintKind::Unique, at))
                    }
                    ast::Constraint::ReferencesConstraint(_)
                    | ast::Constraint::ForeignKeyConstraint(_) => {
                        column.constraints.push((ConstraintKind::ForeignKey, at))
                    }
                    ast::Constraint::CheckConstraint(_) => column
                        .constraints
                        .push((ConstraintKind::Check { not_null_of: None }, at)),
                    _ => {}
                }
            }
            ActionKind::AddColumn(column)
        }
        A::DropColumn(drop) => match drop.column_name_ref() {
            Some(column) => ActionKind::DropColumn {
                column: ident(&column.syntax().text().to_string()),
            },
            None => ActionKind::Other,
        },
        A::RenameColumn(rename) => match (rename.column_name_ref(), rename.column_name()) {
            (Some(from), Some(to)) => ActionKind::RenameColumn {
                from: ident(&from.syntax().text().to_string()),
                to: ident(&to.syntax().text().to_string()),
            },
            _ => ActionKind::Other,
        },
        A::TableRenameTo(rename) => match rename.table_name().and_then(|n| name_in(n.syntax())) {
            Some(to) => ActionKind::RenameTable { to },
            None => ActionKind::Other,
        },
        A::AlterColumn(alter) => {
            let Some(column) = alter
                .column_name_ref()
                .map(|c| ident(&c.syntax().text().to_string()))
            else {
                return ActionKind::Other;
            };
            match alter.option() {
                Some(ast::AlterColumnOption::SetType(set)) => {
                    let ty = set.ty().map(|t| text(t.syntax())).unwrap_or_default();
                    // `USING col` (or `col::type`) is the conversion
                    // PostgreSQL makes without USING: no more work.
                    let using = set
                        .using_expr()
                        .and_then(|u| u.expr())
                        .is_some_and(|e| !is_plain_conversion(&text(e.syntax()), &column, &ty));
                    ActionKind::SetType { column, ty, using }
                }
                Some(ast::AlterColumnOption::SetNotNull(_)) => ActionKind::SetNotNull { column },
                _ => ActionKind::Other,
            }
        }
        A::AddConstraint(add) => {
            let Some(constraint) = add.constraint() else {
                return ActionKind::Other;
            };
            let (kind, using_index) = match &constraint {
                ast::Constraint::CheckConstraint(check) => (
                    ConstraintKind::Check {
                        not_null_of: check.expr().and_then(|e| is_not_null_check(e.syntax())),
                    },
                    false,
                ),
                ast::Constraint::ForeignKeyConstraint(_)
                | ast::Constraint::ReferencesConstraint(_) => (ConstraintKind::ForeignKey, false),
                ast::Constraint::UniqueConstraint(u) => {
                    (ConstraintKind::Unique, u.using_index().is_some())
                }
                ast::Constraint::PrimaryKeyConstraint(p) => {
                    (ConstraintKind::PrimaryKey, p.using_index().is_some())
                }
                ast::Constraint::ExcludeConstraint(_) => (ConstraintKind::Exclude, false),
                _ => return ActionKind::Other,
            };
            ActionKind::AddConstraint(AddConstraint {
                name: constraint
                    .constraint_name()
                    .map(|n| ident(&n.syntax().text().to_string())),
                kind,
                not_valid: constraint.is_not_valid(),
                using_index,
            })
        }
        A::ValidateConstraint(validate) => match validate
            .constraint_name_ref()
            .and_then(|n| name_in(n.syntax()))
        {
            Some(name) => ActionKind::ValidateConstraint { name: name.name },
            None => ActionKind::Other,
        },
        A::SetTablespace(_) => ActionKind::SetTablespace,
        _ => ActionKind::Other,
    }
}

/// `column` when a CHECK expression is exactly `column IS NOT NULL`
/// (in any parentheses).
fn is_not_null_check(expr: &SyntaxNode) -> Option<String> {
    let mut words = text(expr).to_ascii_lowercase();
    while let Some(inner) = words.strip_prefix('(').and_then(|w| w.strip_suffix(')')) {
        words = inner.trim().to_string();
    }
    let column = words.strip_suffix(" is not null")?.trim();
    let plain = column
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '"');
    (plain && !column.is_empty()).then(|| ident(column))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(sql: &str) -> Vec<StatementKind> {
        let parsed = parse(sql);
        assert!(parsed.syntax.is_empty(), "{:?}", parsed.syntax);
        parsed.statements.into_iter().map(|s| s.kind).collect()
    }

    #[test]
    fn names_fold_case_unless_quoted() {
        assert_eq!(
            kinds("ALTER TABLE App.\"Posts\" DROP COLUMN \"Lat\";"),
            [StatementKind::AlterTable {
                table: Name::new(Some("app"), "Posts"),
                actions: vec![Action {
                    offset: 24,
                    kind: ActionKind::DropColumn {
                        column: "Lat".into()
                    }
                }],
            }]
        );
    }

    #[test]
    fn volatile_defaults_are_told_from_constant_ones() {
        let rewrite = |sql: &str| match &kinds(sql)[0] {
            StatementKind::AlterTable { actions, .. } => match &actions[0].kind {
                ActionKind::AddColumn(add) => add.rewrite_at.is_some(),
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        };
        assert!(rewrite(
            "ALTER TABLE t ADD COLUMN c float DEFAULT random() * 10;"
        ));
        assert!(rewrite(
            "ALTER TABLE t ADD COLUMN c uuid DEFAULT gen_random_uuid();"
        ));
        assert!(!rewrite("ALTER TABLE t ADD COLUMN c int DEFAULT 0;"));
        assert!(!rewrite(
            "ALTER TABLE t ADD COLUMN c timestamptz DEFAULT now();"
        ));
    }

    #[test]
    fn syntax_errors_have_their_offset() {
        let sql = "SELECT 1;\nALTER TABLE t ADD COLUMN;\n";
        let parsed = parse(sql);
        assert_eq!(parsed.syntax.len(), 1, "{:?}", parsed.syntax);
        assert_eq!(parsed.syntax[0].offset, 34, "{:?}", parsed.syntax);
        assert_eq!(parsed.syntax[0].message, "expected name");
    }

    #[test]
    fn not_null_checks_are_recognised() {
        match &kinds("ALTER TABLE t ADD CONSTRAINT c CHECK ((email IS NOT NULL)) NOT VALID;")[0] {
            StatementKind::AlterTable { actions, .. } => assert_eq!(
                actions[0].kind,
                ActionKind::AddConstraint(AddConstraint {
                    name: Some("c".into()),
                    kind: ConstraintKind::Check {
                        not_null_of: Some("email".into())
                    },
                    not_valid: true,
                    using_index: false,
                })
            ),
            other => panic!("{other:?}"),
        }
    }
}
