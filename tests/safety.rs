//! Safety under faults (issue 15): checks run as a role without write
//! privileges when one is configured, a connection string that does not
//! parse says which part and why, and a server that answers garbage is
//! named as not PostgreSQL.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};

use crate::support::{Run, Session};

/// A plan whose only phase checks a table the check role cannot read.
const SECRETS_PLAN: &str = "plan: secrets
phases:
  - id: look
    kind: check
    title: The secrets are there
    checks:
      - name: secrets has rows
        sql: SELECT count(*) > 0 FROM secrets
";

/// A role of this test's own (roles are shared by every test database).
fn role_for(s: &Session, what: &str) -> String {
    let role = format!("{}_{what}", s.db.name);
    s.execute(&format!("CREATE ROLE {role} NOLOGIN"));
    role
}

fn drop_role(s: &Session, role: &str) {
    s.execute(&format!("DROP OWNED BY {role}; DROP ROLE {role}"));
}

#[test]
fn checks_run_as_the_check_role_and_fail_where_it_may_not_read() {
    let s = Session::new();
    s.plan("secrets.yaml", SECRETS_PLAN);
    s.execute("CREATE TABLE secrets (v text); INSERT INTO secrets VALUES ('x')");
    let role = role_for(&s, "checker");

    s.orch(&["advance", "secrets", "--check-role", &role])
        .code(8)
        .stdout_has("permission denied for table secrets");
    // ORCH_CHECK_ROLE is the same.
    let mut command = s.command(&["advance", "secrets"]);
    command.env("ORCH_CHECK_ROLE", &role);
    Run::from(command.output().unwrap(), &["advance", "secrets"])
        .code(8)
        .stdout_has("permission denied for table secrets");
    // Given SELECT, the role passes the check.
    s.execute(&format!("GRANT SELECT ON secrets TO {role}"));
    s.orch(&["advance", "secrets", "--check-role", &role])
        .success();
    drop_role(&s, &role);
}

#[test]
fn without_a_check_role_checks_run_as_orch_s_user() {
    let s = Session::new();
    s.plan("secrets.yaml", SECRETS_PLAN);
    s.execute("CREATE TABLE secrets (v text); INSERT INTO secrets VALUES ('x')");
    s.orch(&["advance", "secrets"]).success();
}

#[test]
fn a_check_role_that_does_not_exist_is_a_usage_error() {
    let s = Session::new();
    s.plan("secrets.yaml", SECRETS_PLAN);
    s.execute("CREATE TABLE secrets (v text)");
    s.orch(&[
        "advance",
        "secrets",
        "--check-role",
        "no_such_role_anywhere",
    ])
    .code(2)
    .stderr_has("cannot run checks as --check-role \"no_such_role_anywhere\"")
    .stderr_has("role \"no_such_role_anywhere\" does not exist");
    s.orch(&["advance", "secrets", "--check-role", " "])
        .code(2)
        .stderr_has("a role name must not be empty");
}

/// `orch migrate status` with only `url` choosing the server.
fn orch_with_url(url: &str) -> Run {
    let project = tempfile::tempdir().unwrap();
    let args = ["--database-url", url, "migrate", "status"];
    let output = Command::new(env!("CARGO_BIN_EXE_orch"))
        .args(args)
        .current_dir(project.path())
        .env_remove("DATABASE_URL")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    Run::from(output, &args)
}

#[test]
fn a_connection_string_that_does_not_parse_says_which_part_and_why() {
    for (url, expected) in [
        (
            "postgresql://u@localhost:99999/db",
            "port=\"99999\" is not a port number (1 to 65535)",
        ),
        (
            "host=localhost connect_timeout=abc",
            "connect_timeout=\"abc\" is not a whole number of seconds",
        ),
        (
            "postgresql://localhost/db?colour=blue",
            "unknown parameter \"colour\"",
        ),
        (
            "postgres//oops",
            "it starts like a URL but is not one: a URL starts with postgresql:// or postgres://",
        ),
        (
            "mysql://",
            "a mysql:// URL is not PostgreSQL's; a PostgreSQL URL starts with postgresql:// or postgres://",
        ),
    ] {
        orch_with_url(url)
            .code(2)
            .stderr_has("--database-url is not a valid connection string: ")
            .stderr_has(expected);
    }
}

/// A TCP server that answers each connection with `garbage(n)` bytes
/// after the first 8 it reads (PostgreSQL's TLS request), then reads the
/// startup message (so closing sends no reset) and closes.
fn garbage_server(seed: u64) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut rng = fastrand::Rng::with_seed(seed);
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut request = [0u8; 8];
            let _ = stream.read_exact(&mut request);
            let mut garbage: Vec<u8> = (0..64).map(|_| rng.u8(..)).collect();
            // Not 'S' (TLS accepted) nor 'N' (refused, as a server would
            // say): the first byte is garbage too.
            garbage[0] = b'x';
            let _ = stream.write_all(&garbage);
            let mut length = [0u8; 4];
            if stream.read_exact(&mut length).is_ok() {
                let rest = u32::from_be_bytes(length).saturating_sub(4) as usize;
                let _ = stream.read_exact(&mut vec![0u8; rest.min(1 << 16)]);
            }
        }
    });
    port
}

#[test]
fn a_server_that_answers_garbage_is_named_as_not_postgresql() {
    for seed in [15, 16, 17] {
        let port = garbage_server(seed);
        let url = format!("postgresql://u@127.0.0.1:{port}/db?connect_timeout=30");
        orch_with_url(&url)
            .code(6)
            .stderr_has(&format!(
                "server at \"127.0.0.1\", port {port}: what answered on that host and port is not PostgreSQL"
            ))
            .stderr_has("is the host or port wrong?");
    }
}

/// The guard's second evaluation runs inside the migration's transaction:
/// as the check role, then back to orch's user for the bookkeeping (which
/// the check role may not write).
#[test]
fn a_guard_runs_as_the_check_role_inside_the_migration_s_transaction() {
    let s = Session::new();
    s.execute("CREATE TABLE secrets (v text); INSERT INTO secrets VALUES ('x')");
    s.migration(
        "20240101000000_add_note.sql",
        "-- migrate:up\nALTER TABLE secrets ADD COLUMN note text;\n\n-- migrate:down\nALTER TABLE secrets DROP COLUMN note;\n",
    );
    s.plan(
        "guarded.yaml",
        "plan: guarded
phases:
  - id: add-note
    kind: migration
    role: expand
    title: Add note
    migration: add_note
    guard:
      - name: secrets has rows
        sql: SELECT count(*) > 0 FROM secrets
",
    );
    let role = role_for(&s, "guard");
    s.orch(&["advance", "guarded", "--check-role", &role])
        .code(8)
        .stdout_has("permission denied for table secrets");
    assert!(!s.columns("secrets").contains(&"note".to_string()));
    s.execute(&format!("GRANT SELECT ON secrets TO {role}"));
    s.orch(&["advance", "guarded", "--check-role", &role])
        .success();
    assert!(s.columns("secrets").contains(&"note".to_string()));
    assert_eq!(
        s.value("SELECT count(*) FROM orch.migrations WHERE name = 'add_note'")
            .as_deref(),
        Some("1")
    );
    drop_role(&s, &role);
}
