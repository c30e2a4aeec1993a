//! The contract of a sync-based recipe's plan (`swap.rs`): one short
//! transaction that moves the sequence, sets NOT NULL (the validated check
//! spares the scan), drops the old column(s), renames the new one, sets the
//! default, adopts the key and unique constraints from the indexes built
//! concurrently, and drops the check; its down section, its guard (read so
//! that it still holds when evaluated again after the statements) and what
//! a forced rollback loses.

use crate::migration::source::NewMigration;
use crate::recipe::DraftPhase;
use crate::recipe::draft::{DraftCheck, check};
use crate::recipe::names::{self, ident, literal, table_sql};
use crate::recipe::shape::ConstraintKind;
use crate::recipe::swap::{NewColumn, Swap, schema_qualified};

impl Swap {
    /// The contract phase and its migration (without its header), after
    /// the sync phase `sync_id`; `contract_checks` are the NOT NULL checks
    /// earlier phases added and validated, by new column.
    pub(super) fn contract(
        &self,
        sync_id: &str,
        contract_checks: &[(&NewColumn, String)],
    ) -> (DraftPhase, NewMigration) {
        let t = &self.table;
        let tsql = table_sql(t);
        let regclass = literal(&tsql);
        let old_names = self.old_names();
        let old_shown = old_names.join(", ");
        let new_shown = self.new_names().join(", ");
        let mut up = format!(
            "-- orch drops the sync trigger of phase {sync_id} in this transaction first.\n"
        );
        let mut steps = Vec::new();
        for n in &self.new {
            if let Some(sequence) = &n.carried.sequence {
                // A serial's sequence is `AS integer`: its bounds would stop
                // the new column's values at the old type's.
                if ["smallint", "integer", "bigint"].contains(&n.type_name.as_str()) {
                    up.push_str(&format!("ALTER SEQUENCE {sequence} AS {};\n", n.type_name));
                }
                up.push_str(&format!(
                    "ALTER SEQUENCE {sequence} OWNED BY {tsql}.{};\n",
                    ident(&n.name)
                ));
                steps.push(format!("the sequence {sequence} is made {}'s", n.name));
            }
        }
        for (n, _) in contract_checks {
            up.push_str(&format!(
                "ALTER TABLE {tsql} ALTER COLUMN {} SET NOT NULL;\n",
                ident(&n.name)
            ));
            steps.push(format!(
                "{} is made NOT NULL (the validated check spares the scan)",
                n.name
            ));
        }
        up.push_str(&format!(
            "ALTER TABLE {tsql} {};\n",
            old_names
                .iter()
                .map(|c| format!("DROP COLUMN {}", ident(c)))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        steps.push(format!(
            "{old_shown} {} dropped",
            if self.old.len() == 1 { "is" } else { "are" }
        ));
        for n in &self.new {
            let fin = ident(n.final_name());
            if let Some(to) = &n.final_name {
                up.push_str(&format!(
                    "ALTER TABLE {tsql} RENAME COLUMN {} TO {fin};\n",
                    ident(&n.name)
                ));
                steps.push(format!("{} is renamed {to}", n.name));
            }
            if let Some(default) = &n.carried.default {
                up.push_str(&format!(
                    "ALTER TABLE {tsql} ALTER COLUMN {fin} SET DEFAULT {default};\n"
                ));
                steps.push(format!("{} gets the default {default}", n.final_name()));
            }
            for copy in &n.carried.indexes {
                match copy.constraint {
                    Some(kind @ (ConstraintKind::PrimaryKey | ConstraintKind::Unique)) => {
                        let what = if kind == ConstraintKind::PrimaryKey {
                            "PRIMARY KEY"
                        } else {
                            "UNIQUE"
                        };
                        up.push_str(&format!(
                            "ALTER TABLE {tsql} ADD CONSTRAINT {} {what} USING INDEX {};\n",
                            ident(&copy.final_name),
                            ident(&copy.build_name)
                        ));
                        steps.push(format!(
                            "{} becomes the {} {} (no build, no scan)",
                            copy.build_name,
                            kind.label(),
                            copy.final_name
                        ));
                    }
                    _ if copy.final_name != copy.build_name => {
                        up.push_str(&format!(
                            "ALTER INDEX {} RENAME TO {};\n",
                            table_sql(&schema_qualified(t, &copy.build_name)),
                            ident(&copy.final_name)
                        ));
                        steps.push(format!(
                            "{} is renamed {}",
                            copy.build_name, copy.final_name
                        ));
                    }
                    _ => {}
                }
            }
        }
        for (_, cons) in contract_checks {
            up.push_str(&format!(
                "ALTER TABLE {tsql} DROP CONSTRAINT {};\n",
                ident(cons)
            ));
        }
        let mut down = format!(
            "-- Re-creates {old_shown} EMPTY: {} values are gone with the up section.\n",
            if self.old.len() == 1 { "its" } else { "their" }
        );
        for n in &self.new {
            if n.final_name.is_some() {
                down.push_str(&format!(
                    "ALTER TABLE {tsql} RENAME COLUMN {} TO {};\n",
                    ident(n.final_name()),
                    ident(&n.name)
                ));
            }
        }
        down.push_str(&format!(
            "ALTER TABLE {tsql} {};",
            self.old
                .iter()
                .map(|(c, ty)| format!("ADD COLUMN {} {ty}", ident(c)))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        // Evaluated again after the statements: the old columns are read
        // through to_jsonb (a dropped column is simply absent), and only
        // for rows whose new column is NULL (CASE keeps that order), so the
        // scan stays cheap while the contract holds its lock. A new column
        // renamed by the contract (change-type) is read through to_jsonb too.
        let olds = old_names
            .iter()
            .map(|c| format!("to_jsonb(r) ->> {}", literal(c)))
            .collect::<Vec<_>>()
            .join(", ");
        let new_null = self
            .new
            .iter()
            .map(|n| match n.final_name {
                None => format!("r.{} IS NULL", ident(&n.name)),
                Some(_) => format!(
                    "(to_jsonb(r) ? {name} AND to_jsonb(r) ->> {name} IS NULL)",
                    name = literal(&n.name)
                ),
            })
            .collect::<Vec<_>>()
            .join(" OR ");
        let scan = check(
            "nothing is left to copy",
            format!(
                "SELECT NOT EXISTS (SELECT 1 FROM {tsql} AS r\n                  WHERE CASE WHEN {new_null}\n                             THEN coalesce({olds}) IS NOT NULL END)"
            ),
        );
        // A new column with a validated NOT NULL check has every row
        // filled: the catalog says so without a scan, which matters since
        // the second evaluation runs while the contract holds its lock.
        // After the statements, the check is gone and the column's own
        // NOT NULL stands for it.
        let guard = match contract_checks.len() == self.new.len() {
            false => scan,
            true => check(
                "every row has its new value (the NOT NULL check is validated)",
                "SELECT ".to_string()
                    + &contract_checks
                    .iter()
                    .map(|(n, cons)| {
                        format!(
                            "coalesce((SELECT convalidated FROM pg_constraint\n                 WHERE conrelid = to_regclass({regclass}) AND conname = {}),\n               (SELECT attnotnull FROM pg_attribute\n                 WHERE attrelid = to_regclass({regclass}) AND attname = {}\n                   AND NOT attisdropped), false)",
                            literal(cons),
                            literal(n.final_name())
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n   AND "),
            ),
        };
        let scans = contract_checks.len() != self.new.len();
        let phase = DraftPhase {
            id: self.contract_id.clone(),
            kind: "migration",
            role: Some("contract"),
            title: self.contract_title.clone(),
            migration: Some(names::id_part(&self.contract_id).replace('-', "_")),
            instructions: format!(
                "One transaction, no rewrite: orch drops the sync trigger, then {}.\n\
                 The guard first checks that no row still has {new_shown} to copy,\n\
                 and again after the statements, under the transaction's ACCESS\n\
                 EXCLUSIVE lock on {t}: {} It cannot be undone: a forced rollback\n\
                 re-creates {old_shown} empty.",
                steps.join(", "),
                if scans {
                    "that second run SCANS the table (no validated NOT NULL\n\
                     check vouches for the new column), so reads and writes of\n\
                     it wait for that scan."
                } else {
                    "the validated NOT NULL check answers from the catalog,\n\
                     so the lock lasts a moment."
                }
            ),
            guard: vec![guard],
            checks: self.contract_result_checks(&regclass),
            rollback_loses: Some(self.rollback_loses()),
            ..DraftPhase::default()
        };
        let migration = NewMigration {
            header: String::new(),
            up: up.trim_end().to_string(),
            up_in_transaction: true,
            down,
            down_in_transaction: true,
        };
        (phase, migration)
    }

    /// What the contract leaves, checked after it: the old columns gone,
    /// each new column under its final name and type, a carried sequence
    /// owned by it, its key and unique constraints there, and no sync
    /// trigger left on the table.
    fn contract_result_checks(&self, regclass: &str) -> Vec<DraftCheck> {
        let finals: Vec<&str> = self.new.iter().map(|n| n.final_name()).collect();
        let gone: Vec<String> = self
            .old_names()
            .iter()
            .filter(|c| !finals.contains(&c.as_str()))
            .map(|c| literal(c))
            .collect();
        let mut checks = Vec::new();
        if !gone.is_empty() {
            checks.push(check(
                &format!("{} dropped", self.old_names().join(", ")),
                format!(
                    "SELECT NOT EXISTS (SELECT 1 FROM pg_attribute\n                   WHERE attrelid = to_regclass({regclass}) AND attname IN ({})\n                     AND NOT attisdropped)",
                    gone.join(", ")
                ),
            ));
        }
        for n in &self.new {
            let name = literal(n.final_name());
            let mut conditions = vec![format!(
                "(SELECT atttypid FROM pg_attribute\n         WHERE attrelid = to_regclass({regclass}) AND attname = {name} AND NOT attisdropped)\n        = {}::regtype",
                literal(&n.type_name)
            )];
            if let Some(sequence) = &n.carried.sequence {
                conditions.push(format!(
                    "to_regclass(pg_get_serial_sequence({regclass}, {name})) = to_regclass({})",
                    literal(sequence)
                ));
            }
            for index in &n.carried.indexes {
                conditions.push(match index.constraint {
                    Some(kind) => format!(
                        "EXISTS (SELECT 1 FROM pg_constraint\n               WHERE conrelid = to_regclass({regclass}) AND conname = {} AND contype = '{}')",
                        literal(&index.final_name),
                        if kind == ConstraintKind::PrimaryKey { 'p' } else { 'u' }
                    ),
                    None => format!(
                        "EXISTS (SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid\n               WHERE i.indrelid = to_regclass({regclass}) AND c.relname = {} AND i.indisvalid)",
                        literal(&index.final_name)
                    ),
                });
            }
            checks.push(check(
                &format!(
                    "{} is there, {}, with what it carries",
                    n.final_name(),
                    n.type_name
                ),
                format!("SELECT {}", conditions.join("\n   AND ")),
            ));
        }
        checks.push(check(
            "no sync trigger is left",
            format!(
                "SELECT NOT EXISTS (SELECT 1 FROM pg_trigger\n                   WHERE tgrelid = to_regclass({regclass}) AND tgname LIKE 'orch\\_sync\\_%')"
            ),
        ));
        checks
    }

    /// What a forced rollback of the contract loses.
    fn rollback_loses(&self) -> String {
        let old_shown = self.old_names().join(", ");
        let renamed: Vec<String> = self
            .new
            .iter()
            .filter_map(|n| {
                n.final_name
                    .as_ref()
                    .map(|to| format!("{to} (the new column) back to {}", n.name))
            })
            .collect();
        let kept = self
            .new
            .iter()
            .map(|n| n.final_name().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        match renamed.is_empty() {
            true => format!(
                "the values of {old_shown} are deleted with {}; a forced rollback re-creates {old_shown} EMPTY and nullable ({kept} {} every value)",
                if self.old.len() == 1 {
                    "the column"
                } else {
                    "the columns"
                },
                if self.new.len() == 1 { "keeps" } else { "keep" }
            ),
            false => format!(
                "the old {old_shown} and its values are deleted; the new column, now {kept}, keeps every value; a forced rollback renames {} and re-creates the old {old_shown} EMPTY and nullable",
                renamed.join(", ")
            ),
        }
    }
}
