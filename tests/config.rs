//! orch.toml and .env: found from a subdirectory, folders relative to the
//! file, the precedence flag > environment > file > default, `.env` for
//! `DATABASE_URL` (never over the real environment), and bad files refused
//! at file:line naming the key.

use crate::support::Session;

const CREATE_T: &str = "-- migrate:up\nCREATE TABLE t (a int);\n-- migrate:down\nDROP TABLE t;\n";

const PLAN: &str = "plan: add-t
phases:
  - id: add-t
    kind: migration
    title: Create t
    migration: create_t
";

/// A project whose folders are db/migrations and db/plans, as orch.toml says.
fn project() -> Session {
    let s = Session::new();
    s.write("db/migrations/1_create_t.sql", CREATE_T)
        .write("db/plans/add-t.yaml", PLAN)
        .write(
            "orch.toml",
            "# the project's defaults\nmigrations_dir = \"db/migrations\"\nplans_dir = \"db/plans\"\nlock_timeout = \"250ms\"\nlock_retries = 3\nstatement_timeout = \"7s\"\n",
        )
        .write("sub/dir/.keep", "");
    s
}

#[test]
fn the_file_sets_folders_and_timeouts_and_flags_and_variables_win() {
    let s = project();
    let sub = s.path("sub/dir");
    // From a subdirectory: the file is found above, its folders are
    // relative to it, its lock settings apply.
    let dry = s
        .command(&["advance", "add-t", "--dry-run"])
        .current_dir(&sub)
        .output()
        .unwrap();
    let dry = crate::support::Run::from(dry, &["advance", "add-t", "--dry-run"]);
    dry.success()
        .stdout_has("250 ms per attempt, up to 3 retries")
        .stdout_has("7.0 s");
    // The environment overrides the file...
    let env = s
        .command(&["advance", "add-t", "--dry-run"])
        .current_dir(&sub)
        .env("ORCH_LOCK_TIMEOUT", "300ms")
        .output()
        .unwrap();
    crate::support::Run::from(env, &["advance"])
        .success()
        .stdout_has("300 ms per attempt, up to 3 retries");
    // ...and the flag overrides the environment.
    let flag = s
        .command(&[
            "advance",
            "add-t",
            "--dry-run",
            "--lock-timeout",
            "400ms",
            "--lock-retries",
            "5",
        ])
        .current_dir(&sub)
        .env("ORCH_LOCK_TIMEOUT", "300ms")
        .output()
        .unwrap();
    crate::support::Run::from(flag, &["advance"])
        .success()
        .stdout_has("400 ms per attempt, up to 5 retries");
    // Folders: ORCH_PLANS_DIR over the file, --plans-dir over both.
    s.write("other/.keep", "").write("third/.keep", "");
    let by_env = s
        .command(&["status"])
        .env("ORCH_PLANS_DIR", "other")
        .output()
        .unwrap();
    crate::support::Run::from(by_env, &["status"])
        .success()
        .stdout_has("no plans in other");
    let by_flag = s
        .command(&["status", "--plans-dir", "third"])
        .env("ORCH_PLANS_DIR", "other")
        .output()
        .unwrap();
    crate::support::Run::from(by_flag, &["status"])
        .success()
        .stdout_has("no plans in third");
    // The real run applies the migration from db/migrations.
    s.orch(&["advance", "add-t"]).success();
    assert!(s.has_table("t"));
    // --config names another file; its folders are relative to it.
    s.write("alt/orch.toml", "migrations_dir = \"m\"\n")
        .write("alt/m/2_other.sql", "-- migrate:up\nSELECT 1;\n");
    s.orch(&["migrate", "status", "--config", "alt/orch.toml"])
        .success()
        .stdout_has("other     pending");
}

#[test]
fn dotenv_gives_database_url_but_never_overrides_the_environment() {
    let s = project();
    // DATABASE_URL only in .env: used.
    s.write(
        ".env",
        &format!("# local\nDATABASE_URL={}\n", s.db.connection_string()),
    );
    let mut command = s.command(&["advance", "add-t"]);
    command.env_remove("DATABASE_URL");
    crate::support::Run::from(command.output().unwrap(), &["advance", "add-t"]).success();
    assert!(
        s.has_table("t"),
        "the database of .env's DATABASE_URL was migrated"
    );
    // In both: the environment's wins (.env names a server nobody runs).
    s.write(
        ".env",
        "DATABASE_URL=postgresql://nobody@127.0.0.1:1/none\n",
    );
    s.orch(&["migrate", "status"])
        .success()
        .stdout_has("create_t  applied");
}

/// Regression: a typo in orch.toml must not be ignored silently.
#[test]
fn a_bad_file_is_refused_at_its_line_naming_the_key() {
    let s = project();
    s.write("orch.toml", "plans_dir = \"db/plans\"\ncolour = true\n");
    s.orch(&["status"])
        .code(3)
        .stderr_has("orch.toml:2:1: unknown field `colour`");
    s.write(
        "orch.toml",
        "[targets.shards]\nurls = [\"a\"]\n\nlock_retries = \"many\"\n",
    );
    s.orch(&["status"]).code(3).stderr_has("orch.toml:4:");
    s.write("orch.toml", "lock_timeout = \"0\"\n");
    s.orch(&["migrate", "status"])
        .code(3)
        .stderr_has("orch.toml:1:16: lock_timeout: 0 would let");
    s.write("orch.toml", "");
    s.write(".env", "DATABASE_URL\n");
    s.orch(&["migrate", "status"])
        .code(3)
        .stderr_has(".env:1:1: expected NAME=value");
    s.remove(".env");
    s.orch(&["status", "--config", "missing.toml"])
        .code(2)
        .stderr_has("--config missing.toml: no such file");
}
