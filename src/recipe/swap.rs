//! The flow the sync-based recipes share (`rename-column`, `change-type`,
//! `replace-columns`): add the new column(s), a `sync` phase whose trigger
//! keeps old and new in step while both application versions write, a
//! backfill, NOT NULL (as a validated check) and the old column's indexes
//! and key rebuilt on the new column concurrently, a deploy gate, then one
//! contract migration that drops the old column(s) and gives the new
//! column its final name, default, NOT NULL and key in one short
//! transaction. Each recipe says what the columns are; this file makes the
//! phases, and `carry.rs` reads from the catalog what an old column brings
//! along (or refuses by name what cannot be carried).

use crate::migration::source::NewMigration;
use crate::recipe::carry::Carried;
use crate::recipe::draft::{DraftBackfill, check, sync_mapping};
use crate::recipe::names::{self, ident, literal, table_sql};
use crate::recipe::shape::ConstraintKind;
use crate::recipe::{Draft, DraftMigration, DraftPhase, Recent};

/// A column the plan adds, as it is named while both versions run.
#[derive(Debug, Clone)]
pub struct NewColumn {
    pub name: String,
    pub type_name: String,
    /// The name the contract gives it (`change-type`: the old column's).
    pub final_name: Option<String>,
    /// What it carries over from the old column.
    pub carried: Carried,
}

impl NewColumn {
    /// Its name once the plan is done.
    pub fn final_name(&self) -> &str {
        self.final_name.as_deref().unwrap_or(&self.name)
    }
}

/// What the new application version does, for the deploy gate.
#[derive(Debug, Clone)]
pub struct Gate {
    pub id: String,
    pub title: String,
    pub instructions: String,
}

/// The plan of a sync-based recipe.
#[derive(Debug, Clone)]
pub struct Swap {
    pub recipe: &'static str,
    pub table: String,
    /// The old columns and their types (the contract's down section
    /// re-creates them, empty).
    pub old: Vec<(String, String)>,
    pub new: Vec<NewColumn>,
    /// Each new column's expression over the old columns.
    pub up: Vec<(String, String)>,
    /// Each old column's expression over the new ones; empty: none (the
    /// old version must then stop reading rows the new one writes).
    pub down: Vec<(String, String)>,
    /// Old columns whose NOT NULL the expand migration drops (without
    /// `down` the new version leaves them out).
    pub relax: Vec<String>,
    pub recent: Recent,
    pub gate: Gate,
    /// The contract phase's id and migration suffix.
    pub contract_id: String,
    pub contract_title: String,
    pub description: String,
    pub notes: Vec<String>,
}

impl Swap {
    fn old_names(&self) -> Vec<String> {
        self.old.iter().map(|(c, _)| c.clone()).collect()
    }

    fn new_names(&self) -> Vec<String> {
        self.new.iter().map(|c| c.name.clone()).collect()
    }

    fn up_of(&self, column: &str) -> &str {
        self.up
            .iter()
            .find(|(c, _)| c == column)
            .map(|(_, e)| e.as_str())
            .unwrap_or("NULL")
    }

    /// Rows the backfill still has to copy: a new column NULL where its
    /// `up` is not.
    fn left_to_copy(&self) -> String {
        self.new
            .iter()
            .map(|n| {
                format!(
                    "({} IS NULL AND ({}) IS NOT NULL)",
                    ident(&n.name),
                    self.up_of(&n.name)
                )
            })
            .collect::<Vec<_>>()
            .join(" OR ")
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

    /// The generated plan `plan`.
    pub fn draft(&self, plan: &str) -> Draft {
        let t = &self.table;
        let tsql = table_sql(t);
        let regclass = literal(&tsql);
        let header = |phase: usize, id: &str| {
            format!(
                "Owned by plan {plan}, phase {phase} ({id}): applied by `orch advance {plan}`.\nGenerated by `orch plan new {}`.",
                self.recipe
            )
        };
        let old_names = self.old_names();
        let new_names = self.new_names();
        let old_shown = old_names.join(", ");
        let new_shown = new_names.join(", ");
        let new_id = names::id_part(&new_names.join("-"));
        let new_suffix = new_names.join("_");
        let mut phases = Vec::new();
        let mut migrations = Vec::new();

        // 1. Expand: the new column(s), nullable and without a default.
        let add_id = format!("add-{new_id}");
        let mut up = String::new();
        for column in &self.relax {
            up.push_str(&format!(
                "ALTER TABLE {tsql} ALTER COLUMN {} DROP NOT NULL;\n",
                ident(column)
            ));
        }
        up.push_str(&format!(
            "ALTER TABLE {tsql} {};",
            self.new
                .iter()
                .map(|n| format!("ADD COLUMN {} {}", ident(&n.name), n.type_name))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        let mut down = format!(
            "ALTER TABLE {tsql} {};",
            self.new
                .iter()
                .map(|n| format!("DROP COLUMN IF EXISTS {}", ident(&n.name)))
                .collect::<Vec<_>>()
                .join(", ")
        );
        if !self.relax.is_empty() {
            down.push_str(&format!(
                "\n-- {} stay nullable, which suits every app version: SET NOT NULL here would\n-- scan {t} under ACCESS EXCLUSIVE (use `orch plan new set-not-null` instead).",
                self.relax.join(", ")
            ));
        }
        phases.push(DraftPhase {
            id: add_id.clone(),
            kind: "migration",
            role: Some("expand"),
            title: format!(
                "Add {new_shown} (nullable, no default){}",
                if self.relax.is_empty() {
                    String::new()
                } else {
                    format!(" and drop NOT NULL on {}", self.relax.join(", "))
                }
            ),
            migration: Some(format!("add_{new_suffix}")),
            instructions: format!(
                "Adding a nullable column without a default only changes the catalog\n\
                 (a moment of ACCESS EXCLUSIVE on {t}, no rewrite); the running\n\
                 version does not see it.{} Confirm once it is there.",
                if self.relax.is_empty() {
                    String::new()
                } else {
                    format!(
                        " DROP NOT NULL on {} (catalog only) lets the new version leave\n\
                         them out: nothing computes them from {new_shown}.",
                        self.relax.join(", ")
                    )
                }
            ),
            checks: vec![check(
                &format!("{new_shown} {} there", if self.new.len() == 1 { "is" } else { "are" }),
                format!(
                    "SELECT count(*) = {} FROM pg_attribute\nWHERE attrelid = to_regclass({regclass}) AND NOT attisdropped\n  AND attname IN ({})",
                    self.new.len(),
                    new_names.iter().map(|n| literal(n)).collect::<Vec<_>>().join(", ")
                ),
            )],
            ..DraftPhase::default()
        });
        migrations.push(DraftMigration {
            suffix: format!("add_{new_suffix}"),
            content: NewMigration {
                header: header(phases.len(), &add_id),
                up,
                up_in_transaction: true,
                down,
                down_in_transaction: true,
            },
        });

        // 2. Sync: the trigger keeps the sides in step.
        let sync_id = format!("sync-{new_id}");
        let up_shown = self
            .up
            .iter()
            .map(|(c, e)| format!("`{c} = {e}`"))
            .collect::<Vec<_>>()
            .join(", ");
        let down_shown = self
            .down
            .iter()
            .map(|(c, e)| format!("`{c} = {e}`"))
            .collect::<Vec<_>>()
            .join(", ");
        phases.push(DraftPhase {
            id: sync_id.clone(),
            kind: "sync",
            title: format!("Keep {new_shown} and {old_shown} in step while both app versions run"),
            instructions: format!(
                "Installs a BEFORE INSERT OR UPDATE trigger on {t} (CREATE TRIGGER\n\
                 waits for the running writes, under lock_timeout). From now on a\n\
                 write of {old_shown} also sets {up_shown}{}. The running version\n\
                 needs no change. Confirm once the check passes.",
                if self.down.is_empty() {
                    ". There is no way back from the new columns, so once the new\nversion writes only them, the old version must no longer read\nthe rows it writes".to_string()
                } else {
                    format!(", and a write of {new_shown} alone sets {down_shown}")
                }
            ),
            raw: Some(sync_mapping(
                t,
                &old_names,
                &new_names,
                &self.up,
                &self.down,
            )),
            checks: vec![check(
                "the sync trigger is installed",
                format!(
                    "SELECT EXISTS (SELECT 1 FROM pg_trigger\n              WHERE tgrelid = to_regclass({regclass}) AND NOT tgisinternal\n                AND left(tgname, 10) = 'orch_sync_')"
                ),
            )],
            ..DraftPhase::default()
        });

        // 3. Backfill: the rows written before the trigger.
        let left = self.left_to_copy();
        let nothing_left = check(
            "nothing is left to copy",
            format!("SELECT NOT EXISTS (SELECT 1 FROM {tsql}\n                  WHERE {left})"),
        );
        phases.push(DraftPhase {
            id: format!("backfill-{new_id}"),
            kind: "backfill",
            title: format!("Copy {old_shown} into {new_shown} for the existing rows"),
            instructions: format!(
                "Sets {up_shown} on the rows written before the trigger, in short\n\
                 batches by key, each its own transaction: writers wait at most one\n\
                 batch's row locks. The trigger leaves {old_shown} as {} (the\n\
                 value written is the one it computes itself). Confirm once the\n\
                 check passes.",
                if self.old.len() == 1 {
                    "it is"
                } else {
                    "they are"
                },
            ),
            backfill: Some(DraftBackfill {
                table: t.clone(),
                set: self
                    .up
                    .iter()
                    .map(|(c, e)| format!("{} = {e}", ident(c)))
                    .collect::<Vec<_>>()
                    .join(", "),
                where_: left.clone(),
            }),
            checks: vec![nothing_left.clone()],
            ..DraftPhase::default()
        });

        // 4. NOT NULL, as a check validated without blocking writes.
        let mut contract_checks = Vec::new();
        for n in self.new.iter().filter(|n| n.carried.not_null) {
            let cons = names::object_name(t, std::slice::from_ref(&n.name), "not_null");
            let c = &n.name;
            let csql = ident(c);
            let cid = names::id_part(c);
            let add_check_id = format!("add-{cid}-check");
            phases.push(DraftPhase {
                id: add_check_id.clone(),
                kind: "migration",
                role: Some("expand"),
                title: format!("Add CHECK ({c} IS NOT NULL) NOT VALID"),
                migration: Some(format!("add_{c}_check")),
                instructions: format!(
                    "Adds the check without looking at the existing rows (NOT VALID): a\n\
                     moment of ACCESS EXCLUSIVE on {t}, no scan. Every write is checked\n\
                     from now on; the trigger fills {c} before the check runs. Confirm\n\
                     once it is there."
                ),
                checks: vec![check(
                    &format!("{cons} is there"),
                    format!(
                        "SELECT EXISTS (SELECT 1 FROM pg_constraint\n              WHERE conrelid = to_regclass({regclass}) AND conname = {})",
                        literal(&cons)
                    ),
                )],
                ..DraftPhase::default()
            });
            migrations.push(DraftMigration {
                suffix: format!("add_{c}_check"),
                content: NewMigration {
                    header: header(phases.len(), &add_check_id),
                    up: format!(
                        "ALTER TABLE {tsql} ADD CONSTRAINT {} CHECK ({csql} IS NOT NULL) NOT VALID;",
                        ident(&cons)
                    ),
                    up_in_transaction: true,
                    down: format!("ALTER TABLE {tsql} DROP CONSTRAINT IF EXISTS {};", ident(&cons)),
                    down_in_transaction: true,
                },
            });
            let validate_id = format!("validate-{cid}-check");
            phases.push(DraftPhase {
                id: validate_id.clone(),
                kind: "migration",
                role: Some("expand"),
                title: format!("Validate the check on {c}"),
                migration: Some(format!("validate_{c}_check")),
                instructions: format!(
                    "VALIDATE scans {t} under SHARE UPDATE EXCLUSIVE: inserts, updates\n\
                     and deletes go on during the scan. The guard refuses while a row\n\
                     has {c} NULL (run `orch backfill {plan} backfill-{new_id}`, then\n\
                     advance again)."
                ),
                guard: vec![check(
                    &format!("no row has {c} NULL"),
                    format!("SELECT NOT EXISTS (SELECT 1 FROM {tsql} WHERE {csql} IS NULL)"),
                )],
                checks: vec![check(
                    &format!("{cons} is validated"),
                    format!(
                        "SELECT coalesce((SELECT convalidated FROM pg_constraint\n                 WHERE conrelid = to_regclass({regclass}) AND conname = {}), false)",
                        literal(&cons)
                    ),
                )],
                ..DraftPhase::default()
            });
            migrations.push(DraftMigration {
                suffix: format!("validate_{c}_check"),
                content: NewMigration {
                    header: header(phases.len(), &validate_id),
                    up: format!("ALTER TABLE {tsql} VALIDATE CONSTRAINT {};", ident(&cons)),
                    up_in_transaction: true,
                    down: "-- A validated constraint cannot be made NOT VALID again; the down of the\n-- phase before drops it.".to_string(),
                    down_in_transaction: true,
                },
            });
            contract_checks.push((n, cons));
        }

        // 5. The old column's indexes, rebuilt on the new one.
        for n in &self.new {
            for copy in &n.carried.indexes {
                let name = &copy.build_name;
                let index_regclass = literal(&table_sql(&schema_qualified(t, name)));
                let build_id = format!("build-{}", names::id_part(name));
                phases.push(DraftPhase {
                    id: build_id.clone(),
                    kind: "migration",
                    role: Some("expand"),
                    title: format!("Build {name} on {} concurrently", n.name),
                    migration: Some(format!("build_{name}")),
                    instructions: format!(
                        "CREATE {}INDEX CONCURRENTLY builds the index that replaces {} while\n\
                         inserts, updates and deletes go on (outside a transaction; it\n\
                         waits for the transactions already running). If it fails,\n\
                         PostgreSQL leaves an INVALID index {name}: drop it with\n\
                         `DROP INDEX CONCURRENTLY IF EXISTS {name};`, fix the cause, and run\n\
                         advance again (the guard refuses while it is there).",
                        if copy.unique { "UNIQUE " } else { "" },
                        copy.replaces
                    ),
                    guard: vec![check(
                        &format!("no INVALID index {name} is left from a failed build"),
                        format!(
                            "SELECT NOT EXISTS (SELECT 1 FROM pg_index\n                   WHERE indexrelid = to_regclass({index_regclass}) AND NOT indisvalid)"
                        ),
                    )],
                    checks: vec![check(
                        &format!("{name} is valid"),
                        format!(
                            "SELECT coalesce((SELECT indisvalid FROM pg_index\n                 WHERE indexrelid = to_regclass({index_regclass})), false)"
                        ),
                    )],
                    ..DraftPhase::default()
                });
                migrations.push(DraftMigration {
                    suffix: format!("build_{name}"),
                    content: NewMigration {
                        header: header(phases.len(), &build_id),
                        up: format!(
                            "CREATE {}INDEX CONCURRENTLY IF NOT EXISTS {} ON {tsql} ({});",
                            if copy.unique { "UNIQUE " } else { "" },
                            ident(name),
                            ident(&n.name)
                        ),
                        up_in_transaction: false,
                        down: format!(
                            "DROP INDEX CONCURRENTLY IF EXISTS {};",
                            table_sql(&schema_qualified(t, name))
                        ),
                        down_in_transaction: false,
                    },
                });
            }
        }

        // 6. The deploy gate.
        let in_step = if self.down.is_empty() {
            let mut conditions: Vec<String> = self
                .new
                .iter()
                .map(|n| format!("{} IS NOT NULL", ident(&n.name)))
                .collect();
            conditions.extend(old_names.iter().map(|c| format!("{} IS NULL", ident(c))));
            conditions.join(" AND ")
        } else {
            self.new
                .iter()
                .map(|n| {
                    format!(
                        "{}::text IS NOT DISTINCT FROM (CAST(({}) AS {}))::text",
                        ident(&n.name),
                        self.up_of(&n.name),
                        n.type_name
                    )
                })
                .collect::<Vec<_>>()
                .join(" AND ")
        };
        phases.push(DraftPhase {
            id: self.gate.id.clone(),
            kind: "deploy",
            title: self.gate.title.clone(),
            instructions: format!(
                "{}\n\nThe check looks at {}.",
                self.gate.instructions,
                self.recent.describe()
            ),
            checks: vec![check(
                if self.down.is_empty() {
                    "new rows are written by the new version"
                } else {
                    "new rows have both sides in step"
                },
                format!(
                    "SELECT count(*) > 0 AND bool_and({in_step})\nFROM {}",
                    self.recent.rows(&tsql, "*")
                ),
            )],
            ..DraftPhase::default()
        });

        // 7. Contract: one short transaction.
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
        for (n, _) in &contract_checks {
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
        for (_, cons) in &contract_checks {
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
        phases.push(DraftPhase {
            id: self.contract_id.clone(),
            kind: "migration",
            role: Some("contract"),
            title: self.contract_title.clone(),
            migration: Some(names::id_part(&self.contract_id).replace('-', "_")),
            instructions: format!(
                "One transaction, a moment of ACCESS EXCLUSIVE on {t}, no scan and\n\
                 no rewrite: orch drops the sync trigger, then {}. The\n\
                 guard first checks that no row still has {new_shown} to copy. It\n\
                 cannot be undone: a forced rollback re-creates {old_shown} empty.",
                steps.join(", ")
            ),
            guard: vec![guard],
            rollback_loses: Some(self.rollback_loses()),
            ..DraftPhase::default()
        });
        migrations.push(DraftMigration {
            suffix: self.contract_id.replace('-', "_"),
            content: NewMigration {
                header: header(phases.len(), &self.contract_id),
                up: up.trim_end().to_string(),
                up_in_transaction: true,
                down,
                down_in_transaction: true,
            },
        });
        Draft {
            description: self.description.clone(),
            phases,
            migrations,
            notes: self.notes.clone(),
        }
    }
}

/// An object `name` in the schema of `table` (`schema.name` when the table
/// is qualified), as text (quoted by the caller).
fn schema_qualified(table: &str, name: &str) -> String {
    match table.rsplit_once('.') {
        Some((schema, _)) => format!("{schema}.{name}"),
        None => name.to_string(),
    }
}
