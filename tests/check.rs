//! `orch check`: what it says of plans, offline and against the database.

use crate::support::Session;

const RENAME_PLAN: &str = "plan: rename-name
phases:
  - id: add-full-name
    kind: migration
    role: expand
    title: Add full_name
    migration: add_full_name
  - id: deploy-dual-write
    kind: deploy
    title: Deploy the version writing name and full_name
    instructions: deploy v2
  - id: deploy-full-name-only
    kind: deploy
    title: Deploy the version writing only full_name
    instructions: deploy v3
  - id: drop-name
    kind: migration
    role: contract
    title: Drop name
    migration: drop_name
    reversible: false
    guard:
      - name: nothing left to copy
        sql: SELECT NOT EXISTS (SELECT 1 FROM users WHERE full_name IS NULL)
";

fn rename_session(expand: &str) -> Session {
    let s = Session::new();
    s.execute("CREATE TABLE users (id bigint PRIMARY KEY, name text NOT NULL)");
    s.migration(
        "20240101000000_add_full_name.sql",
        &format!(
            "-- migrate:up\n{expand}\n-- migrate:down\nALTER TABLE users DROP COLUMN full_name;\n"
        ),
    )
    .migration(
        "20240102000000_drop_name.sql",
        "-- migrate:up\nALTER TABLE users DROP COLUMN name;\n",
    )
    .plan("rename-name.yaml", RENAME_PLAN);
    s
}

/// Regression: a new user's rename plan passed `check --online` although
/// the version deployed at the last gate could not insert a user (name was
/// still NOT NULL without a default).
#[test]
fn online_check_warns_when_a_gate_expects_writes_to_stop_on_a_required_column() {
    let s = rename_session("ALTER TABLE users ADD COLUMN full_name text;");
    s.orch(&["check", "--online"])
        .success()
        .stdout_has("phase 3 deploy-full-name-only: warning: phase 4 (drop-name) drops users.name")
        .stdout_has(
            "users.name is NOT NULL without a default and no phase before the gate relaxes it",
        )
        .stdout_has("ALTER TABLE users ALTER COLUMN name DROP NOT NULL");
    // Offline, the database's columns are unknown: nothing to say.
    s.orch(&["check"]).success().stdout_lacks("warning");
}

#[test]
fn relaxing_the_old_column_in_the_expand_step_satisfies_the_check() {
    for expand in [
        "ALTER TABLE users ADD COLUMN full_name text, ALTER COLUMN name DROP NOT NULL;",
        "ALTER TABLE users ADD COLUMN full_name text;\nALTER TABLE users ALTER name SET DEFAULT '';",
    ] {
        let s = rename_session(expand);
        s.orch(&["check", "--online"])
            .success()
            .stdout_lacks("warning");
    }
    // A column that is already nullable needs nothing.
    let s = rename_session("ALTER TABLE users ADD COLUMN full_name text;");
    s.execute("ALTER TABLE users ALTER COLUMN name DROP NOT NULL");
    s.orch(&["check", "--online"])
        .success()
        .stdout_lacks("warning");
}
