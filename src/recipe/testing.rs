//! For the recipes' unit tests: tables as the catalog would describe them,
//! and the check every generated plan must pass: it loads as a plan orch
//! accepts, and the lint finds nothing in its migrations, as `orch check`
//! would run it.

use std::collections::HashMap;

use crate::lint::{self, Role};
use crate::migration::MigrationSet;
use crate::migration::source::{self, Format};
use crate::plan::PlanSet;
use crate::plan::format::{PhaseKind, Role as PlanRole};
use crate::recipe::shape::{ColumnShape, ConstraintKind, ConstraintShape, IndexShape};
use crate::recipe::{Catalog, Draft, TableShape, migration_name};

/// A column `name type`, nullable, no default.
pub fn col(name: &str, type_name: &str) -> ColumnShape {
    ColumnShape {
        name: name.into(),
        type_name: type_name.into(),
        not_null: false,
        default: None,
        identity: false,
    }
}

/// `table(id bigserial primary key, created_at timestamptz default now(), ...)`.
pub fn table_with(name: &str, columns: Vec<ColumnShape>) -> TableShape {
    let mut all = vec![
        ColumnShape {
            not_null: true,
            default: Some(format!("nextval('{name}_id_seq'::regclass)")),
            ..col("id", "bigint")
        },
        ColumnShape {
            not_null: true,
            default: Some("now()".into()),
            ..col("created_at", "timestamp with time zone")
        },
    ];
    all.extend(columns);
    TableShape {
        name: name.into(),
        rows_estimate: Some(50_000),
        columns: all,
        partitioned: false,
        indexes: vec![index(&format!("{name}_pkey"), &["id"], true, true)],
        constraints: vec![ConstraintShape {
            name: format!("{name}_pkey"),
            kind: ConstraintKind::PrimaryKey,
            table: name.into(),
            columns: vec!["id".into()],
            references: None,
            validated: true,
            definition: "PRIMARY KEY (id)".into(),
        }],
        ..TableShape::default()
    }
}

pub fn index(name: &str, columns: &[&str], unique: bool, primary: bool) -> IndexShape {
    IndexShape {
        name: name.into(),
        columns: columns.iter().map(|c| Some(c.to_string())).collect(),
        unique,
        primary,
        valid: true,
        partial: false,
        definition: format!("CREATE INDEX {name} ON t ({})", columns.join(", ")),
    }
}

pub fn catalog(tables: Vec<TableShape>) -> Catalog {
    Catalog {
        tables: tables.into_iter().map(|t| (t.name.clone(), t)).collect(),
        counts: HashMap::new(),
    }
}

/// Write `draft` as plan `plan` into a fresh project (after a migration
/// creating its tables from `schema`), and assert that the plan loads and
/// the lint reports nothing. Returns the plan's text.
pub fn assert_checks_clean(draft: &Draft, plan: &str, schema: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let migrations = dir.path().join("migrations");
    let plans = dir.path().join("plans");
    std::fs::create_dir_all(&migrations).unwrap();
    std::fs::create_dir_all(&plans).unwrap();
    std::fs::write(
        migrations.join("20240101000000_schema.sql"),
        format!("-- migrate:up\n{schema}\n-- migrate:down\n"),
    )
    .unwrap();
    let now = chrono::DateTime::parse_from_rfc3339("2024-06-01T00:00:00Z")
        .unwrap()
        .to_utc();
    for migration in &draft.migrations {
        let set = MigrationSet::load(&migrations, None).unwrap();
        source::open(Format::Dbmate, &migrations)
            .write(
                &set,
                &migration_name(plan, &migration.suffix),
                now,
                &migration.content,
            )
            .unwrap();
    }
    let text = draft.render(plan, "orch plan new test");
    std::fs::write(plans.join(format!("{plan}.yaml")), &text).unwrap();
    let set = MigrationSet::load(&migrations, None).unwrap();
    let (loaded, problems) = PlanSet::load_all(&plans, &set).unwrap();
    assert!(problems.is_empty(), "{problems:?}\n{text}");
    let mut roles = HashMap::new();
    for phase in &loaded.plans[0].spec.phases {
        if phase.kind != PhaseKind::Migration {
            continue;
        }
        let file = set
            .by_reference(phase.migration.as_deref().unwrap())
            .unwrap();
        let role = match phase.role {
            Some(PlanRole::Contract) => Role::Contract,
            _ => Role::Expand,
        };
        roles.insert(file.version, role);
    }
    let findings = lint::lint_folder(
        &set,
        lint::Catalog::default(),
        |file| roles.get(&file.version).copied().unwrap_or(Role::Plain),
        |_, _| false,
    );
    let rendered: Vec<String> = findings.iter().map(|f| f.render()).collect();
    assert!(rendered.is_empty(), "{}\n{text}", rendered.join("\n"));
    text
}
