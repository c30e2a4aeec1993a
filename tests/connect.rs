//! Connecting as libpq does, against servers of the tests' own: a socket
//! directory in `PGHOST` or a URL's host, what a failed connection says
//! (the socket or server it tried, psql's question, never the password),
//! and `orch wait`.

use std::path::Path;
use std::process::{Command, Stdio};

use orch::pg_server::{PgServer, ServerOptions};

use crate::support::Run;

/// The variables that choose a server; each test sets the ones it means.
const CONNECTION_VARIABLES: &[&str] = &[
    "DATABASE_URL",
    "PGHOST",
    "PGHOSTADDR",
    "PGPORT",
    "PGUSER",
    "PGPASSWORD",
    "PGDATABASE",
    "PGSSLMODE",
    "PGSSLROOTCERT",
    "PGCONNECT_TIMEOUT",
];

/// Run `orch args...` in an empty project with only `env` choosing the
/// server (no `DATABASE_URL`, no password file).
fn orch(args: &[&str], env: &[(&str, &str)]) -> Run {
    let project = tempfile::Builder::new()
        .prefix("orch-connect-")
        .tempdir()
        .unwrap();
    for sub in ["migrations", "plans"] {
        std::fs::create_dir(project.path().join(sub)).unwrap();
    }
    let mut command = Command::new(env!("CARGO_BIN_EXE_orch"));
    command
        .args(args)
        .current_dir(project.path())
        .env("PGPASSFILE", project.path().join("no-pgpass"))
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    for name in CONNECTION_VARIABLES {
        command.env_remove(name);
    }
    command.envs(env.iter().copied());
    Run::from(command.output().expect("run orch"), args)
}

fn socket_of(dir: &Path) -> String {
    format!("socket \"{}/.s.PGSQL.5432\"", dir.display())
}

fn throwaway_server() -> PgServer {
    PgServer::start(ServerOptions::default()).expect("a throwaway PostgreSQL")
}

#[test]
fn pghost_may_name_a_socket_directory_and_wait_sees_it_accepting() {
    let server = throwaway_server();
    let dir = server.socket_dir().display().to_string();
    let env = [
        ("PGHOST", dir.as_str()),
        ("PGUSER", server.user()),
        ("PGDATABASE", "postgres"),
    ];
    orch(&["wait"], &env)
        .success()
        .stderr_has(&format!(
            "for PostgreSQL to accept connections on {}",
            socket_of(server.socket_dir())
        ))
        .stderr_has("PostgreSQL accepts connections (1 attempt)");
    orch(&["migrate", "status"], &env).success();
    // A URL whose host is the (percent-encoded) directory is the same.
    orch(&["--database-url", &server.url("postgres"), "wait"], &[])
        .success()
        .stderr_has(&socket_of(server.socket_dir()));
}

#[test]
fn a_missing_socket_is_named_with_psql_s_question_and_no_password() {
    let empty = tempfile::tempdir().unwrap();
    let dir = empty.path().display().to_string();
    orch(
        &["migrate", "status"],
        &[("PGHOST", dir.as_str()), ("PGPASSWORD", "hunter2")],
    )
    .code(6)
    .stderr_has(&format!(
        "{}: No such file or directory (os error 2); is the server running locally and accepting connections on that socket?",
        socket_of(empty.path())
    ))
    .stderr_has("from PG* environment variables");
    let failed = orch(
        &[
            "--database-url",
            &format!("postgresql://alice:hunter2@/app?host={dir}"),
            "migrate",
            "status",
        ],
        &[],
    );
    failed.code(6).stderr_has(&socket_of(empty.path()));
    assert!(!failed.stderr.contains("hunter2"), "{}", failed.stderr);
}

#[test]
fn a_closed_tcp_port_asks_whether_the_server_accepts_tcp_connections() {
    // A port nothing listens on once the listener is dropped.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    orch(
        &["migrate", "status"],
        &[("PGHOST", "127.0.0.1"), ("PGPORT", port.as_str())],
    )
    .code(6)
    .stderr_has(&format!("server at \"127.0.0.1\", port {port}: "))
    .stderr_has("is the server running on that host and accepting TCP/IP connections?");
}

#[test]
fn wait_gives_up_with_the_connect_error_when_no_server_comes() {
    let empty = tempfile::tempdir().unwrap();
    let dir = empty.path().display().to_string();
    orch(&["wait", "--timeout", "300ms"], &[("PGHOST", dir.as_str())])
        .code(6)
        .stderr_has(&format!(
            "waiting up to 300 ms for PostgreSQL to accept connections on {}",
            socket_of(empty.path())
        ))
        .stderr_has(&format!(
            "error: cannot connect to PostgreSQL (host={dir} port=5432"
        ))
        .stderr_has("is the server running locally and accepting connections on that socket?")
        .stderr_has("gave up waiting after 300 ms (");
    orch(&["wait", "--timeout", "0"], &[("PGHOST", dir.as_str())])
        .code(6)
        .stderr_has("tried once (--timeout 0)");
}

#[test]
fn wait_timeout_needs_a_unit() {
    orch(&["wait", "--timeout", "60"], &[])
        .code(2)
        .stderr_has("\"60\" has no unit; write 60s for seconds or 60ms for milliseconds");
}

/// Regression: against a server that accepts TCP but never answers, orch
/// hung until killed (connect_timeout and PGCONNECT_TIMEOUT bounded only
/// the socket's connect); psql gave up after the timeout.
#[test]
fn connect_timeout_bounds_a_server_that_never_answers() {
    // Accepts connections (the kernel completes them) and never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let url = format!("postgres://someone@127.0.0.1:{port}/db?connect_timeout=2");
    orch(&["migrate", "status", "--database-url", &url], &[])
        .code(6)
        .stderr_has(&format!(
            "server at \"127.0.0.1\", port {port}: no answer within 2s (connect_timeout)"
        ));
    orch(
        &["migrate", "status"],
        &[
            ("PGHOST", "127.0.0.1"),
            ("PGPORT", port.as_str()),
            ("PGCONNECT_TIMEOUT", "2"),
        ],
    )
    .code(6)
    .stderr_has("no answer within 2s (connect_timeout)");
    orch(
        &["migrate", "status"],
        &[
            ("PGHOST", "127.0.0.1"),
            ("PGPORT", port.as_str()),
            ("PGCONNECT_TIMEOUT", "abc"),
        ],
    )
    .code(2)
    .stderr_has("PGCONNECT_TIMEOUT=\"abc\" is not a whole number of seconds");
    drop(listener);
}
