//! A backfill phase in a plan: its `backfill` section (table, key, the
//! `set` and `where` fragments, batch tuning), checked without a database;
//! the table and key are checked against one by `orch check --online`.

use crate::plan::format::{BackfillSpec, PhaseSpec};
use crate::plan::kinds::KindRules;
use crate::plan::load::phase_path;
use crate::plan::validator::{Validator, valid_identifier};
use crate::sql_text;
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
                "a backfill phase needs a backfill section (table, set, where)",
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
    for (field, fragment) in [("set", Some(&spec.set)), ("where", spec.condition.as_ref())] {
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
        }
    }
    for (field, value) in [("batch_time", &spec.batch_time), ("pause", &spec.pause)] {
        if let Some(text) = value {
            match crate::timefmt::parse_duration(text) {
                Err(e) => v.at(i, &["backfill", field], e),
                Ok(d) if field == "batch_time" && (d.as_millis() < 10 || d.as_secs() > 10) => v.at(
                    i,
                    &["backfill", field],
                    "batch_time must be between 10ms and 10s",
                ),
                Ok(_) => {}
            }
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
    if let Some(w) = spec.workers
        && !(1..=64).contains(&w)
    {
        v.at(
            i,
            &["backfill", "workers"],
            "workers must be between 1 and 64",
        );
    }
    if spec.max_rows_per_second == Some(0) {
        v.at(
            i,
            &["backfill", "max_rows_per_second"],
            "max_rows_per_second must be at least 1 (leave it out for no limit)",
        );
    }
    if spec.vacuum_every == Some(0) {
        v.at(
            i,
            &["backfill", "vacuum_every"],
            "vacuum_every must be at least 1 (leave it out to never vacuum)",
        );
    }
}
