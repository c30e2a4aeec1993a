//! The migration lint: every section orch is about to run (and, at `orch
//! check`, every file) is parsed and checked for what would hold a lock
//! too long or break the application still running, with what orch knows
//! that a one-file linter does not (`knowledge`). `squawk` adapts the
//! parser; `hazards` holds orch's rules; `rules` lists them; `allow` reads
//! `-- orch:allow RULE-ID: reason`.

pub mod allow;
#[cfg(test)]
mod corpus;
mod finding;
mod hazards;
pub mod knowledge;
pub mod model;
pub mod rules;
mod squawk;

use crate::sql_text;
use std::collections::{BTreeSet, HashSet};

pub use finding::{Finding, render_all};
pub use knowledge::{Catalog, Role, TableFacts};
pub use rules::{Rule, Severity};

use crate::error::Error;
use crate::lint::hazards::{Raw, Scope};
use crate::lint::knowledge::History;
use crate::lint::model::{ActionKind, ConstraintKind, Parsed, StatementKind};
use crate::migration::{Migration, MigrationSet, Section};

/// Parse a section's SQL into orch's statement model.
pub fn parse(section: &Section) -> Parsed {
    squawk::parse(&section.sql)
}

/// Lints sections in folder order, remembering what each did.
#[derive(Debug, Default, Clone)]
pub struct Linter {
    history: History,
    catalog: Catalog,
}

impl Linter {
    pub fn new(catalog: Catalog) -> Linter {
        Linter {
            history: History::default(),
            catalog,
        }
    }

    /// A new run starts: the tables created so far exist now, and may hold
    /// rows.
    pub fn new_run(&mut self) {
        self.history.new_run();
    }

    /// Learn from a section that ran before (or runs in another run).
    pub fn learn(&mut self, section: &Section) {
        let parsed = parse(section);
        for index in 0..parsed.statements.len() {
            self.history.learn(&parsed, index, false);
        }
    }

    /// The findings of `section`, about to run in a phase of `role`; what
    /// it does is remembered for the sections after it.
    pub fn lint(&mut self, section: &Section, role: Role) -> Vec<Finding> {
        let parsed = parse(section);
        let sql = section.sql.as_str();
        // (statement index, finding); syntax errors go with the statement
        // they are in, so an allow comment before it can accept them. Only
        // the first of each line is kept: the parser's recovery after one
        // mistake reports every token after it too.
        let mut seen_lines = HashSet::new();
        let mut raws: Vec<(Option<usize>, Raw)> = parsed
            .syntax
            .iter()
            .filter(|e| seen_lines.insert(sql_text::line_of_offset(sql, e.offset)))
            .map(|e| {
                let index = parsed
                    .statements
                    .iter()
                    .position(|s| e.offset <= s.end)
                    .or(parsed.statements.len().checked_sub(1));
                let raw = Raw {
                    rule: Rule::SyntaxError,
                    offset: e.offset,
                    message: format!("syntax error: {}", e.message),
                };
                (index, raw)
            })
            .collect();
        let mut not_valid_here = HashSet::new();
        let mut utc = false;
        for (index, statement) in parsed.statements.iter().enumerate() {
            if let StatementKind::SetTimeZone { utc: is_utc } = statement.kind {
                utc = is_utc;
            }
            let scope = Scope {
                role,
                transactional: section.transactional,
                history: &self.history,
                catalog: &self.catalog,
                not_valid_here: &not_valid_here,
                utc,
            };
            let text = &sql[statement.offset..statement.end];
            raws.extend(
                hazards::check(statement, text, &scope)
                    .into_iter()
                    .map(|raw| (Some(index), raw)),
            );
            self.history.learn(&parsed, index, true);
            if let StatementKind::AlterTable { actions, .. } = &statement.kind {
                for action in actions {
                    if let ActionKind::AddConstraint(add) = &action.kind
                        && add.not_valid
                        && matches!(
                            add.kind,
                            ConstraintKind::Check { .. } | ConstraintKind::ForeignKey
                        )
                        && let Some(name) = &add.name
                    {
                        not_valid_here.insert(name.clone());
                    }
                }
            }
        }
        let mut findings = Vec::new();
        for (index, statement) in parsed.statements.iter().enumerate() {
            let gap_start = index
                .checked_sub(1)
                .map_or(0, |before| parsed.statements[before].end);
            let allows = allow::allows_in(sql, gap_start, statement.offset);
            for a in &allows {
                let problem = match &a.rule {
                    Err(id) => Some(format!(
                        "`-- {} {id}` names no rule of orch's lint (docs/lint.md lists them)",
                        allow::MARKER
                    )),
                    Ok(rule) if a.reason.is_empty() => Some(format!(
                        "`-- {} {}` needs a reason: `-- {} {}: why it is safe here`",
                        allow::MARKER,
                        rule.id(),
                        allow::MARKER,
                        rule.id()
                    )),
                    Ok(_) => None,
                };
                if let Some(message) = problem {
                    findings.push(finding(
                        section,
                        Raw {
                            rule: Rule::AllowComment,
                            offset: a.offset,
                            message,
                        },
                        None,
                    ));
                }
            }
            for (_, raw) in raws.iter().filter(|(i, _)| *i == Some(index)) {
                let reason = allows
                    .iter()
                    .find(|a| a.rule == Ok(raw.rule) && !a.reason.is_empty())
                    .map(|a| a.reason.clone());
                findings.push(finding(section, raw.clone(), reason));
            }
        }
        for (_, raw) in raws.into_iter().filter(|(i, _)| i.is_none()) {
            findings.push(finding(section, raw, None));
        }
        findings.sort_by_key(|f| (f.line, f.column));
        findings
    }
}

fn finding(section: &Section, raw: Raw, allowed: Option<String>) -> Finding {
    let sql = section.sql.as_str();
    let offset = raw.offset.min(sql.len());
    let line_start = sql[..offset].rfind('\n').map_or(0, |i| i + 1);
    Finding {
        file: section.path.display().to_string(),
        line: section.file_line(offset),
        column: sql[line_start..offset].chars().count() + 1,
        rule: raw.rule,
        severity: raw.rule.severity(),
        message: raw.message,
        lock: raw.rule.lock(),
        recipe: raw.rule.recipe(),
        allowed,
    }
}

/// The tables `sections` name, as written, to ask the database about.
pub fn tables_of<'a>(sections: impl IntoIterator<Item = &'a Section>) -> Vec<String> {
    let names: BTreeSet<String> = sections
        .into_iter()
        .flat_map(|s| parse(s).tables())
        .map(|t| t.to_string())
        .collect();
    names.into_iter().collect()
}

/// The findings of the up sections of `run` (in apply order), about to run
/// one after the other in phases of `role`: the migrations of `set` before
/// each are history, and the tables the run creates are new.
pub fn lint_run(
    set: &MigrationSet,
    run: &[&Migration],
    role: Role,
    catalog: Catalog,
) -> Vec<Finding> {
    let Some(last) = run.iter().filter_map(|r| set.position(r.version)).max() else {
        return Vec::new();
    };
    let mut linter = Linter::new(catalog);
    let mut findings = Vec::new();
    let in_run = |f: &Migration| run.iter().any(|r| r.version == f.version);
    for file in set.files.iter().take(last + 1) {
        if !in_run(file) {
            linter.learn(&file.up);
        }
    }
    for file in run {
        findings.extend(linter.lint(&file.up, role));
    }
    findings
}

/// The findings of the down sections of `revert` (newest first, as `migrate
/// down`, `redo` or a plan's rollback runs them): every migration up to the
/// newest of them has run, so their tables may hold rows. With `reapply`
/// (`redo`), the up section of the last one runs again after its down, in
/// the same role: it puts back what the application already had.
pub fn lint_revert(
    set: &MigrationSet,
    revert: &[&Migration],
    reapply: bool,
    catalog: Catalog,
) -> Vec<Finding> {
    let Some(last) = revert.iter().filter_map(|r| set.position(r.version)).max() else {
        return Vec::new();
    };
    let mut linter = Linter::new(catalog);
    for file in set.files.iter().take(last + 1) {
        linter.learn(&file.up);
    }
    linter.new_run();
    let mut findings = Vec::new();
    for file in revert {
        if let Some(down) = &file.down {
            findings.extend(linter.lint(down, Role::Revert));
        }
    }
    if let Some(file) = revert.last().filter(|_| reapply) {
        findings.extend(linter.lint(&file.up, Role::Revert));
    }
    findings
}

/// Lint every migration of `set` (`orch check`), each in a phase of the
/// role `role_of` says, after the ones before it. Each is its own run,
/// unless `same_run(previous, file)` says one `migrate up` applies both
/// (known with a database: both pending, neither a plan's).
pub fn lint_folder(
    set: &MigrationSet,
    catalog: Catalog,
    role_of: impl Fn(&Migration) -> Role,
    same_run: impl Fn(&Migration, &Migration) -> bool,
) -> Vec<Finding> {
    let mut linter = Linter::new(catalog);
    let mut findings = Vec::new();
    let mut previous: Option<&Migration> = None;
    for file in &set.files {
        if !previous.is_some_and(|p| same_run(p, file)) {
            linter.new_run();
        }
        findings.extend(linter.lint(&file.up, role_of(file)));
        // Its down section runs, if ever, after its up section, in a run of
        // its own; what it does is not what the next file sees. Only `down`
        // and rollbacks run it (and refuse its errors then), so here its
        // findings are warnings, as a down section unfit for its
        // transaction is.
        if let Some(down) = file.down.as_ref().filter(|d| !d.is_empty()) {
            let mut undo = linter.clone();
            undo.new_run();
            findings.extend(undo.lint(down, Role::Revert).into_iter().map(|mut f| {
                if f.severity == Severity::Error && f.allowed.is_none() {
                    f.severity = Severity::Warning;
                    f.message.push_str(
                        " (a down section: `orch migrate down`, `redo` and `orch rollback` refuse it as it is)",
                    );
                }
                f
            }));
        }
        previous = Some(file);
    }
    findings
}

/// The refusal for findings that block (errors nobody allowed), naming
/// each with its lock and recipe; None when nothing blocks.
pub fn refusal(findings: &[Finding], doing: &str) -> Option<Error> {
    let blocking: Vec<&Finding> = findings.iter().filter(|f| f.blocks()).collect();
    if blocking.is_empty() {
        return None;
    }
    Some(Error::Lint {
        message: format!(
            "refusing to {doing}: the lint found {} error(s), and nothing ran:\n{}",
            blocking.len(),
            render_all(blocking.iter().copied())
        ),
        syntax: blocking.iter().any(|f| f.rule == Rule::SyntaxError),
    })
}
