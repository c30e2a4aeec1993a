//! A backfill phase in a plan: its `backfill` section (table, key, the
//! `set` and `where` fragments, batch tuning), checked without a database;
//! the table and key are checked against one by `orch check --online`.

use std::time::Duration;

use crate::plan::format::{BackfillSpec, PhaseSpec, WalkKind};
use crate::plan::kinds::KindRules;
use crate::plan::load::phase_path;
use crate::plan::tuning;
use crate::plan::validator::{Validator, valid_identifier};
use crate::sql_text::{self, Fragment};
use crate::yaml_locate::PathSeg;

pub(crate) struct BackfillRules;

impl KindRules for BackfillRules {
    fn sections(&self) -> &'static [&'static str] {
        &["backfill"]
    }

    fn validate(&self, v: &mut Validator<'_>, i: usize, phase: &PhaseSpec) {
        match &phase.backfill {
            None => v.at(
                i,
                &["backfill"],
                "a backfill phase needs a backfill section (table, set or command, where)",
            ),
            Some(spec) => validate_spec(v, i, spec),
        }
    }

    fn label(&self) -> &'static str {
        "backfill"
    }

    fn pauses(&self) -> bool {
        true
    }

    fn shows_result(&self) -> bool {
        true
    }

    fn checked_online(&self) -> bool {
        true
    }
}

fn validate_spec(v: &mut Validator<'_>, i: usize, spec: &BackfillSpec) {
    let table_ok = match spec.table.split_once('.') {
        Some((schema, table)) => valid_identifier(schema) && valid_identifier(table),
        None => valid_identifier(&spec.table),
    };
    if !table_ok {
        v.at(
            i,
            &["backfill", "table"],
            format!("{:?} is not a valid table name (lowercase identifier, optionally schema-qualified; orch quotes it)", spec.table),
        );
    }
    if let Some(key) = &spec.key {
        if key.is_empty() {
            v.at(
                i,
                &["backfill", "key"],
                "key lists at least one column (or leave it out to use the primary key)",
            );
        }
        for (j, column) in key.iter().enumerate() {
            let mut path = phase_path(i, &["backfill", "key"]);
            path.push(PathSeg::Index(j));
            if !valid_identifier(column) {
                v.at_path(
                    path,
                    format!("{column:?} is not a valid column name (lowercase identifier)"),
                );
            } else if key[..j].contains(column) {
                v.at_path(path, format!("column {column:?} is listed twice"));
            }
        }
    }
    validate_command(v, i, spec);
    let set = (spec.command.is_none()).then_some(&spec.set);
    let fragments = [
        ("set", set, Fragment::Assignments),
        ("where", spec.condition.as_ref(), Fragment::Expression),
    ];
    for (field, fragment, kind) in fragments {
        let Some(fragment) = fragment else { continue };
        if fragment.trim().is_empty() {
            v.at(
                i,
                &["backfill", field],
                format!("{field} must not be empty"),
            );
        } else if sql_text::split_statements(fragment).len() != 1
            || fragment.trim_end().ends_with(';')
        {
            v.at(
                i,
                &["backfill", field],
                format!("{field} is an SQL fragment, without ';'"),
            );
        } else if let Some(problem) = sql_text::fragment_problem(fragment, kind) {
            v.at(i, &["backfill", field], format!("{field} {problem}"));
        }
    }
    type Limit = fn(Duration) -> Result<Duration, String>;
    let durations: [(&str, &Option<String>, Limit); 2] = [
        ("batch_time", &spec.batch_time, tuning::batch_time),
        ("pause", &spec.pause, tuning::pause),
    ];
    for (field, text, limit) in durations {
        if let Some(text) = text
            && let Err(e) = tuning::duration(text).and_then(limit)
        {
            v.at(i, &["backfill", field], e);
        }
    }
    if spec.min_batch == Some(0) {
        v.at(
            i,
            &["backfill", "min_batch"],
            "min_batch must be at least 1",
        );
    }
    if let (Some(min), Some(max)) = (spec.min_batch, spec.max_batch)
        && min > max
    {
        v.at(
            i,
            &["backfill", "max_batch"],
            format!("max_batch ({max}) is below min_batch ({min})"),
        );
    }
    if let Some(Err(e)) = spec.workers.map(tuning::workers) {
        v.at(i, &["backfill", "workers"], e);
    }
    if let Some(Err(e)) = spec.max_rows_per_second.map(tuning::max_rows_per_second) {
        v.at(i, &["backfill", "max_rows_per_second"], e);
    }
    if let Some(Err(e)) = spec.vacuum_every.as_ref().map(tuning::vacuum_pace) {
        v.at(i, &["backfill", "vacuum_every"], e);
    }
    if spec.walk == Some(WalkKind::Physical) && spec.condition.is_none() {
        v.at(
            i,
            &["backfill", "walk"],
            "walk: physical needs `where`: a row the backfill already updated may be met again on a later page, and its catch-up pass updates only the rows still matching `where` (or use walk: key)",
        );
    }
    if spec.make_room == Some(true)
        && (spec.walk == Some(WalkKind::Physical) || spec.command.is_some())
    {
        v.at(
            i,
            &["backfill", "make_room"],
            "make_room is the key walk's (a `set` backfill with walk: key); leave it out here",
        );
    }
    if spec.walk == Some(WalkKind::Physical) && spec.command.is_some() {
        v.at(
            i,
            &["backfill", "walk"],
            "walk: physical is for `set`; a backfill with `command` walks by key (its writes compare each row's `reads` by key)",
        );
    }
    if let Some(Err(e)) = spec.max_replica_lag.as_deref().map(tuning::max_replica_lag) {
        v.at(i, &["backfill", "max_replica_lag"], e);
    }
    if let Some(Err(e)) = spec.max_wal_rate.as_deref().map(tuning::max_wal_rate) {
        v.at(i, &["backfill", "max_wal_rate"], e);
    }
    if let Some(Err(e)) = spec
        .synchronous_commit
        .as_deref()
        .map(tuning::synchronous_commit)
    {
        v.at(i, &["backfill", "synchronous_commit"], e);
    }
}

/// `set` or `command` (exactly one), and what only a command takes.
fn validate_command(v: &mut Validator<'_>, i: usize, spec: &BackfillSpec) {
    let Some(command) = &spec.command else {
        let only_with_command = [
            ("reads", spec.reads.is_some()),
            ("writes", spec.writes.is_some()),
            ("max_errors", spec.max_errors.is_some()),
            ("command_timeout", spec.command_timeout.is_some()),
        ];
        for (field, given) in only_with_command {
            if given {
                v.at(
                    i,
                    &["backfill", field],
                    format!("{field} goes with command (a program computing the values); this backfill has set"),
                );
            }
        }
        if spec.set.trim().is_empty() {
            v.at(
                i,
                &["backfill"],
                "a backfill needs set (an SQL SET list) or command (a program that computes the values)",
            );
        }
        return;
    };
    if !spec.set.is_empty() {
        v.at(
            i,
            &["backfill", "command"],
            "set and command are mutually exclusive: give set (SQL) or command (a program), not both",
        );
    }
    if command
        .first()
        .is_none_or(|program| program.trim().is_empty())
    {
        v.at(
            i,
            &["backfill", "command"],
            "command is the program's argv, e.g. [\"python3\", \"scripts/loc.py\"], and its first item names the program",
        );
    }
    for (field, columns) in [("reads", &spec.reads), ("writes", &spec.writes)] {
        let Some(columns) = columns else {
            v.at(
                i,
                &["backfill", field],
                format!(
                    "a command backfill lists its {field}: the columns the program {}",
                    if field == "reads" {
                        "is given"
                    } else {
                        "may set"
                    }
                ),
            );
            continue;
        };
        if field == "writes" && columns.is_empty() {
            v.at(i, &["backfill", field], "writes lists at least one column");
        }
        for (j, column) in columns.iter().enumerate() {
            let mut path = phase_path(i, &["backfill", field]);
            path.push(PathSeg::Index(j));
            if !valid_identifier(column) {
                v.at_path(
                    path,
                    format!("{column:?} is not a valid column name (lowercase identifier)"),
                );
            } else if columns[..j].contains(column) {
                v.at_path(path, format!("column {column:?} is listed twice"));
            } else if field == "writes" && spec.key.as_ref().is_some_and(|k| k.contains(column)) {
                v.at_path(
                    path,
                    format!("column {column:?} is the walk's key, which a backfill cannot change"),
                );
            }
        }
    }
    if let Some(text) = &spec.command_timeout
        && let Err(e) = tuning::duration(text).and_then(command_timeout)
    {
        v.at(i, &["backfill", "command_timeout"], e);
    }
}

/// A program gets between 100ms and 1h per batch.
fn command_timeout(d: Duration) -> Result<Duration, String> {
    if d >= Duration::from_millis(100) && d <= Duration::from_secs(3600) {
        Ok(d)
    } else {
        Err("command_timeout must be between 100ms and 1h".to_string())
    }
}
