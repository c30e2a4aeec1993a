//! The command line itself: every documented exit code, `--exit-code`,
//! shell completions, the man page, and colour.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};

use crate::support::{Run, Session};

const WALK_PLAN: &str = "plan: walk
phases:
  - id: add-t
    kind: migration
    title: Create t
    migration: create_t
  - id: gate
    kind: deploy
    title: Deploy
    instructions: deploy it
    checks:
      - name: t has a row
        sql: SELECT EXISTS (SELECT 1 FROM t)
  - id: verify
    kind: check
    title: t has two rows
    checks:
      - name: two rows
        sql: SELECT count(*) = 2 FROM t
";

const CREATE_T: &str = "-- migrate:up\nCREATE TABLE t (a int);\n-- migrate:down\nDROP TABLE t;\n";

/// The codes of an "Exit codes:" listing (a line per code; continuation
/// lines are indented further).
fn listed_codes(help: &str) -> BTreeSet<i32> {
    help.lines()
        .skip_while(|l| !l.starts_with("Exit codes:"))
        .skip(1)
        .filter_map(|l| l.strip_prefix("  "))
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect()
}

/// Every code `orch --help` lists, each produced by a command. 7 (no
/// throwaway server) and 130 (Ctrl-C) need a fault: `Error::code`'s unit
/// test checks those against the listing; 130 is also produced by the
/// backfill and zero-downtime tests.
#[test]
fn every_documented_exit_code_is_given_by_a_command() {
    let s = Session::new();
    let help = s.orch(&["--help"]);
    help.success();
    let listed = listed_codes(&help.stdout);
    let mut seen = BTreeSet::from([7, 130]);
    let mut expect = |run: &Run, code: i32| {
        run.code(code);
        seen.insert(code);
    };

    expect(
        s.orch(&["migrate", "status"]).stdout_has("no migrations"),
        0,
    );
    expect(s.orch(&["advance"]).stderr_has("<PLAN>"), 2);
    expect(
        s.orch(&["completions", "tcsh"])
            .stderr_has("possible values"),
        2,
    );
    s.plan("broken.yaml", "plan: broken\nphases: []\n");
    expect(s.orch(&["check"]).stderr_has("plans/broken.yaml"), 3);
    s.remove("plans/broken.yaml");

    s.migration("1_create_t.sql", CREATE_T)
        .plan("walk.yaml", WALK_PLAN);
    expect(
        s.orch(&["confirm", "walk", "--by", "a"])
            .stderr_has("plan walk has not started"),
        4,
    );
    expect(
        s.orch(&["migrate", "status", "--exit-code"])
            .stdout_has("plan walk, phase 1 (add-t)")
            .stderr_has("migrations not up to date: 1 pending"),
        9,
    );
    s.orch(&["advance", "walk"]).success();
    s.orch(&["confirm", "walk", "--by", "a"]).success();
    s.orch(&["advance", "walk"]).success();
    // The gate's check does not hold: t is empty.
    expect(
        s.orch(&["confirm", "walk", "--by", "a"])
            .stderr_has("a check failed"),
        8,
    );
    s.execute("INSERT INTO t VALUES (1)");
    s.orch(&["confirm", "walk", "--by", "a"]).success();
    // The check phase fails: t has one row, not two.
    expect(
        s.orch(&["advance", "walk"])
            .stderr_has("phase 3 (verify) of plan walk failed: a check did not hold"),
        8,
    );

    s.migration("2_divide.sql", "-- migrate:up\nSELECT 1/0;\n");
    expect(s.orch(&["migrate", "up"]).stderr_has("division by zero"), 1);
    s.remove("migrations/2_divide.sql");

    s.migration(
        "3_alter_t.sql",
        "-- migrate:up\nALTER TABLE t ADD COLUMN b int;\n",
    );
    let holder = s.db.connect();
    holder.execute("BEGIN; LOCK TABLE t IN ACCESS SHARE MODE");
    expect(
        &s.orch(&[
            "migrate",
            "up",
            "--lock-timeout",
            "50ms",
            "--lock-retries",
            "0",
        ]),
        5,
    );
    holder.execute("ROLLBACK");

    expect(
        s.orch(&[
            "migrate",
            "status",
            "--database-url",
            "postgresql://127.0.0.1:1/none",
        ])
        .stderr_has("cannot connect to PostgreSQL"),
        6,
    );
    assert_eq!(
        seen, listed,
        "codes produced (left) vs codes listed in --help (right)"
    );
}

#[test]
fn migrate_status_exit_code_flags_pending_changed_and_missing() {
    let s = Session::new();
    s.migration("1_create_t.sql", CREATE_T);
    s.migration(
        "2_create_u.sql",
        "-- migrate:up\nCREATE TABLE u (a int);\n-- migrate:down\nDROP TABLE u;\n",
    );
    s.orch(&["migrate", "status"]).success();
    s.orch(&["migrate", "status", "--exit-code"])
        .code(9)
        .stdout_has("2 migrations, 2 pending")
        .stderr_has("migrations not up to date: 2 pending");
    s.orch(&["migrate", "up"]).success();
    s.orch(&["migrate", "status", "--exit-code"]).success();
    s.orch(&["migrate", "status", "--exit-code", "--json"])
        .success();

    s.migration(
        "2_create_u.sql",
        "-- migrate:up\nCREATE TABLE u (b int);\n-- migrate:down\nDROP TABLE u;\n",
    );
    s.remove("migrations/1_create_t.sql");
    s.orch(&["migrate", "status", "--exit-code", "--json"])
        .code(9)
        .stdout_has("\"state\": \"changed\"")
        .stderr_has("1 changed since applied, 1 applied with the file missing");
}

#[test]
fn status_exit_code_flags_plans_that_wait_on_the_operator() {
    let s = Session::new();
    s.migration("1_create_t.sql", CREATE_T)
        .plan("walk.yaml", WALK_PLAN);
    let waits = |why: &str| {
        s.orch(&["status", "--exit-code"])
            .code(9)
            .stdout_has("walk")
            .stderr_has(&format!("1 plan(s) wait on the operator: walk ({why})"));
        s.orch(&["status", "walk", "--exit-code", "--json"]).code(9);
    };
    let idle = || {
        s.orch(&["status", "--exit-code"]).success();
    };

    idle(); // not started
    s.orch(&["advance", "walk"]).success();
    waits("done, not confirmed");
    s.orch(&["confirm", "walk", "--by", "a"]).success();
    idle(); // phase 2 pending: the next step is the operator's, but nothing is stuck
    s.orch(&["advance", "walk"]).success();
    waits("gate open");
    s.execute("INSERT INTO t VALUES (1)");
    s.orch(&["confirm", "walk", "--by", "a"]).success();
    s.orch(&["advance", "walk"]).code(8);
    waits("failed");
    // A phase left running by a process that died: nobody holds the plan.
    s.execute("UPDATE orch.phases SET state = 'running' WHERE id = 'verify'");
    waits("interrupted");
    s.execute("UPDATE orch.phases SET state = 'paused' WHERE id = 'verify'");
    waits("paused");
    s.execute("INSERT INTO t VALUES (2)");
    s.orch(&["advance", "walk"]).success();
    s.orch(&["confirm", "walk", "--by", "a"]).success();
    idle(); // complete
}

fn orch_alone(args: &[&str]) -> Run {
    let output = Command::new(env!("CARGO_BIN_EXE_orch"))
        .args(args)
        .env_remove("NO_COLOR")
        .env_remove("CLICOLOR_FORCE")
        .env_remove("CLICOLOR")
        .stdin(Stdio::null())
        .output()
        .expect("run orch");
    Run::from(output, args)
}

#[test]
fn completions_for_every_shell() {
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let run = orch_alone(&["completions", shell]);
        run.success().stdout_has("migrate").stdout_has("confirm");
        assert!(run.stderr.is_empty(), "{run:?}");
    }
    // The bash script is valid bash (when bash is here to say so).
    let bash = orch_alone(&["completions", "bash"]);
    if let Some(out) = pipe_through("bash", &["-n"], &bash.stdout) {
        assert!(
            out.status.success(),
            "bash -n: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// `input` through `program args`, when the program is installed (None
/// when it is not: the check is then skipped).
fn pipe_through(program: &str, args: &[&str], input: &str) -> Option<std::process::Output> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    Some(child.wait_with_output().unwrap())
}

#[test]
fn man_page_renders() {
    let run = orch_alone(&["man"]);
    run.success()
        .stdout_has(".TH orch 1")
        .stdout_has(".SH SUBCOMMANDS")
        .stdout_has("completions")
        .stdout_has("Exit codes:");
    // Rendered by groff when it is installed: no warnings, the sections show.
    if let Some(out) = pipe_through("groff", &["-man", "-Tutf8", "-ww", "-P-cbou"], &run.stdout) {
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success());
        assert!(
            out.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            text.contains("SYNOPSIS") && text.contains("orch-migrate(1)"),
            "{text}"
        );
    }
}

#[test]
fn man_pages_for_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_str().unwrap();
    orch_alone(&["man", "--dir", path])
        .success()
        .stdout_has("man pages to");
    for page in [
        "orch.1",
        "orch-migrate.1",
        "orch-migrate-up.1",
        "orch-completions.1",
    ] {
        let text = std::fs::read_to_string(dir.path().join(page)).unwrap();
        assert!(text.contains(".SH NAME"), "{page}: {text}");
    }
    orch_alone(&["man", "--dir", &format!("{path}/missing")])
        .code(2)
        .stderr_has("no such directory");
}

#[test]
fn colour_follows_no_color_and_clicolor_force() {
    let run = |vars: &[(&str, &str)]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_orch"));
        command
            .arg("no-such-command")
            .env_remove("NO_COLOR")
            .env_remove("CLICOLOR_FORCE")
            .env_remove("CLICOLOR")
            .stdin(Stdio::null());
        for (k, v) in vars {
            command.env(k, v);
        }
        let run = Run::from(command.output().unwrap(), &["no-such-command"]);
        run.code(2);
        run.stderr.contains('\u{1b}')
    };
    assert!(!run(&[]), "a pipe gets no colour");
    assert!(run(&[("CLICOLOR_FORCE", "1")]));
    assert!(!run(&[("CLICOLOR_FORCE", "0")]));
    assert!(!run(&[("CLICOLOR_FORCE", "1"), ("NO_COLOR", "1")]));
    assert!(run(&[("CLICOLOR_FORCE", "1"), ("NO_COLOR", "")]));
}

#[test]
fn log_colour_follows_no_color_and_clicolor_force() {
    // A password file others can read draws a warning in the log.
    let dir = tempfile::tempdir().unwrap();
    let pgpass = dir.path().join("pgpass");
    std::fs::write(&pgpass, "*:*:*:*:secret\n").unwrap();
    std::fs::set_permissions(&pgpass, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let run = |vars: &[(&str, &str)]| {
        let args = [
            "migrate",
            "status",
            "--database-url",
            "postgresql://127.0.0.1:1/none",
        ];
        let mut command = Command::new(env!("CARGO_BIN_EXE_orch"));
        command
            .args(args)
            .current_dir(dir.path())
            .env("PGPASSFILE", &pgpass)
            .env_remove("RUST_LOG")
            .env_remove("NO_COLOR")
            .env_remove("CLICOLOR_FORCE")
            .env_remove("CLICOLOR")
            .stdin(Stdio::null());
        for (k, v) in vars {
            command.env(k, v);
        }
        let run = Run::from(command.output().unwrap(), &args);
        run.code(6).stderr_has("group or world access");
        run.stderr.contains('\u{1b}')
    };
    assert!(!run(&[]), "a pipe gets no colour");
    assert!(run(&[("CLICOLOR_FORCE", "1")]));
    assert!(!run(&[("CLICOLOR_FORCE", "1"), ("NO_COLOR", "1")]));
}
