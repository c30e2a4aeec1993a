use std::io::{self, BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::fs::symlink;

use super::bin_dir::{BinSearch, NOT_FOUND};
use super::*;

/// Set in a copy of this test binary that `child_process_entry` runs as.
const CHILD_ENV: &str = "ORCH_PG_SERVER_TEST_CHILD";

fn psql(server: &PgServer, args: &[&str]) -> String {
    let psql = server
        .find_tool("psql")
        .expect("psql beside the server or on PATH");
    let output = Command::new(psql)
        .args(["-X", "-A", "-t"])
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "psql {args:?} failed: {stderr}");
    String::from_utf8(output.stdout).unwrap()
}

/// Alive and not a zombie (PID 1 here may be slow to reap orphans).
fn alive(pid: u32) -> bool {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(") ")
        .is_some_and(|(_, rest)| !rest.starts_with('Z'))
}

/// Every PostgreSQL process chdirs into its data dir, so this finds backends too.
fn processes_in(dir: &Path) -> Vec<String> {
    let entries = fs::read_dir("/proc").unwrap().flatten();
    let cwds = entries.filter_map(|entry| {
        Some((
            entry.file_name(),
            fs::read_link(entry.path().join("cwd")).ok()?,
        ))
    });
    cwds.filter(|(_, cwd)| cwd.starts_with(dir))
        .map(|(pid, _)| pid.to_string_lossy().into_owned())
        .collect()
}

fn wait_until(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn serves_psql_on_its_socket_with_the_requested_settings() {
    let started = Instant::now();
    let options = ServerOptions {
        settings: vec![("work_mem".into(), "7MB".into())],
        ..Default::default()
    };
    let server = PgServer::start(options).unwrap();
    eprintln!("PgServer::start took {:?}", started.elapsed());
    assert!(server.socket_dir().starts_with(std::env::temp_dir()));

    let host = server.socket_dir().to_str().unwrap();
    assert_eq!(
        psql(&server, &["-h", host, "-U", "postgres", "-c", "select 1"]),
        "1\n"
    );
    let settings = "select current_setting('fsync'), current_setting('max_connections'), \
        current_setting('work_mem'), current_setting('listen_addresses')";
    let conninfo = server.connection_string("postgres");
    assert_eq!(
        psql(&server, &[&conninfo, "-c", settings]),
        "off|300|7MB|\n"
    );
    assert_eq!(
        psql(
            &server,
            &[&server.url("template1"), "-c", "select current_database()"]
        ),
        "template1\n"
    );
}

#[test]
fn durable_servers_keep_fsync_on() {
    let server = PgServer::start(ServerOptions {
        durable: true,
        ..Default::default()
    })
    .unwrap();
    let settings = "select current_setting('fsync'), current_setting('full_page_writes'), \
        current_setting('synchronous_commit')";
    let url = server.url("postgres");
    assert_eq!(psql(&server, &[&url, "-c", settings]), "on|on|on\n");
}

#[test]
fn drop_stops_the_server_and_removes_its_files() {
    let server = PgServer::start(ServerOptions::default()).unwrap();
    let (dir, pid) = (server.socket_dir().to_path_buf(), server.postmaster.id());
    assert!(alive(pid) && !processes_in(&dir).is_empty());
    server.stop();
    assert!(!dir.exists(), "{} left behind", dir.display());
    assert!(!alive(pid), "postmaster {pid} still running");
    assert_eq!(processes_in(&dir), Vec::<String>::new());
}

#[test]
fn the_server_does_not_inherit_the_watchdog_pipe() {
    let server = PgServer::start(ServerOptions::default()).unwrap();
    let fd = server.watchdog.pipe.as_ref().unwrap().as_raw_fd();
    let pipe = fs::read_link(format!("/proc/self/fd/{fd}")).unwrap();
    let fds = fs::read_dir(format!("/proc/{}/fd", server.postmaster.id())).unwrap();
    for fd in fds.flatten() {
        assert_ne!(
            fs::read_link(fd.path()).ok(),
            Some(pipe.clone()),
            "postmaster holds the watchdog pipe"
        );
    }
}

#[test]
fn a_server_that_exits_early_fails_fast_with_its_log() {
    let started = Instant::now();
    let options = ServerOptions {
        settings: vec![("no_such_setting".into(), "1".into())],
        ..Default::default()
    };
    let message = PgServer::start(options).unwrap_err().to_string();
    assert!(
        message.contains("unrecognized configuration parameter \"no_such_setting\""),
        "{message}"
    );
    assert!(
        message.starts_with("cannot start a throwaway PostgreSQL: postgres exited"),
        "{message}"
    );
    assert!(started.elapsed() < Duration::from_secs(20));
}

/// Not a test by itself: the body of the child processes spawned below,
/// which run it by name with `--ignored --exact`.
#[test]
#[ignore = "the body of child processes that the watchdog and bin-dir tests spawn"]
fn child_process_entry() {
    let mode = std::env::var(CHILD_ENV).unwrap_or_else(|_| {
        panic!("{CHILD_ENV} is unset: this runs only as a child of the pg_server tests")
    });
    if mode == "bindir" {
        println!(
            "ORCH-CHILD {}",
            find_bin_dir().map_or_else(|e| e.to_string(), |d| d.display().to_string())
        );
        return;
    }
    let server = PgServer::start(ServerOptions::default()).unwrap();
    let dir = server.socket_dir().display();
    println!(
        "ORCH-CHILD {dir} {} {}",
        server.postmaster.id(),
        server.watchdog.child.id()
    );
    io::stdout().flush().unwrap();
    match mode.as_str() {
        "exit" => std::process::exit(0), // runs no destructors
        _ => loop {
            std::thread::sleep(Duration::from_secs(1)); // until SIGKILLed
        },
    }
}

fn spawn_child(mode: &str, bin_dir: Option<&Path>) -> (Child, Vec<String>) {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command.args([
        "--ignored",
        "--exact",
        "pg_server::tests::child_process_entry",
        "--nocapture",
        "--test-threads=1",
    ]);
    command.env(CHILD_ENV, mode).stdout(Stdio::piped());
    if let Some(dir) = bin_dir {
        command.env("ORCH_PG_BINDIR", dir);
    }
    let mut child = command.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok);
    let line = lines.find_map(|l| Some(l.split_once("ORCH-CHILD ")?.1.to_string()));
    // Keep reading, so the child's libtest can print its report.
    std::thread::spawn(move || lines.for_each(drop));
    let words = line
        .expect("child printed no ORCH-CHILD line")
        .split(' ')
        .map(str::to_string)
        .collect();
    (child, words)
}

fn assert_cleaned_up_after_child(mode: &str) {
    let (mut child, words) = spawn_child(mode, None);
    let dir = PathBuf::from(&words[0]);
    let (postmaster, watchdog): (u32, u32) = (words[1].parse().unwrap(), words[2].parse().unwrap());
    assert!(dir.exists() && alive(postmaster) && alive(watchdog));
    if mode == "kill" {
        child.kill().unwrap();
    }
    child.wait().unwrap();
    wait_until("the postmaster is gone", || !alive(postmaster));
    wait_until("the watchdog is gone", || !alive(watchdog));
    wait_until("the temp dir is gone", || !dir.exists());
    wait_until("no process runs in the temp dir", || {
        processes_in(&dir).is_empty()
    });
}

#[test]
fn watchdog_cleans_up_after_process_exit() {
    assert_cleaned_up_after_child("exit");
}

#[test]
fn watchdog_cleans_up_after_sigkill() {
    assert_cleaned_up_after_child("kill");
}

#[test]
fn find_bin_dir_honours_orch_pg_bindir() {
    let fake = tempfile::tempdir().unwrap();
    let (mut child, words) = spawn_child("bindir", Some(fake.path()));
    child.wait().unwrap();
    let message = words.join(" ");
    assert!(message.contains("ORCH_PG_BINDIR=") && message.contains("does not contain initdb"));
    write_executables(fake.path(), &["initdb", "postgres"]);
    let (mut child, words) = spawn_child("bindir", Some(fake.path()));
    child.wait().unwrap();
    assert_eq!(words.join(" "), fake.path().display().to_string());
}

fn write_executables(root: &Path, files: &[&str]) {
    for file in files {
        let path = root.join(file);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        // pg_config reports the server in opt/pg/bin.
        let script = format!("#!/bin/sh\necho {}\n", root.join("opt/pg/bin").display());
        fs::write(
            &path,
            if file.ends_with("pg_config") {
                script
            } else {
                String::new()
            },
        )
        .unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    }
}

#[test]
fn bin_dir_search_order() {
    let debian = [
        "usr/lib/postgresql/9.6/bin/initdb",
        "usr/lib/postgresql/9.6/bin/postgres",
        "usr/lib/postgresql/10/bin/initdb",
        "usr/lib/postgresql/10/bin/postgres",
        // A client-only install: skipped.
        "usr/lib/postgresql/16/bin/psql",
    ];
    let redhat = [
        "usr/pgsql-9.5/bin/initdb",
        "usr/pgsql-9.5/bin/postgres",
        "usr/pgsql-13/bin/initdb",
        "usr/pgsql-13/bin/postgres",
    ];
    let local = ["usr/local/pgsql/bin/initdb", "usr/local/pgsql/bin/postgres"];
    let custom = [
        "custom/initdb",
        "custom/postgres",
        "opt/pg/bin/initdb",
        "opt/pg/bin/postgres",
    ];
    let lone_initdb = ["lone/initdb", "bin/pg_config"];
    type Case<'a> = (
        &'a str,
        Vec<&'a str>,
        Option<&'a str>,
        &'a [&'a str],
        Result<&'a str, &'a str>,
    );
    let cases: Vec<Case> = vec![
        (
            "override wins",
            [&custom[..], &debian].concat(),
            Some("opt/pg/bin"),
            &["links"],
            Ok("opt/pg/bin"),
        ),
        (
            "override must hold the server",
            debian.to_vec(),
            Some("usr/lib/postgresql/16/bin"),
            &[],
            Err("ORCH_PG_BINDIR="),
        ),
        (
            "initdb on PATH, through a symlink",
            [&custom[..], &debian].concat(),
            None,
            &["links"],
            Ok("custom"),
        ),
        (
            "initdb on PATH needs postgres beside it",
            [&lone_initdb[..], &custom].concat(),
            None,
            &["lone", "bin"],
            Ok("opt/pg/bin"),
        ),
        (
            "pg_config --bindir",
            [&custom[..], &debian, &["bin/pg_config"]].concat(),
            None,
            &["bin"],
            Ok("opt/pg/bin"),
        ),
        (
            "highest Debian version with a server",
            [&debian[..], &redhat, &local].concat(),
            None,
            &[],
            Ok("usr/lib/postgresql/10/bin"),
        ),
        (
            "highest /usr/pgsql-*",
            [&redhat[..], &local].concat(),
            None,
            &[],
            Ok("usr/pgsql-13/bin"),
        ),
        (
            "/usr/local/pgsql",
            local.to_vec(),
            None,
            &[],
            Ok("usr/local/pgsql/bin"),
        ),
        (
            "nothing found",
            vec!["usr/lib/postgresql/16/bin/psql"],
            None,
            &["bin"],
            Err(NOT_FOUND),
        ),
    ];
    for (name, files, override_dir, path, expected) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(tmp.path()).unwrap();
        write_executables(&root, &files);
        fs::create_dir_all(root.join("links")).unwrap();
        symlink(root.join("custom/initdb"), root.join("links/initdb")).unwrap();
        let search = BinSearch {
            override_dir: override_dir.map(|dir| root.join(dir)),
            path: (!path.is_empty())
                .then(|| std::env::join_paths(path.iter().map(|dir| root.join(dir))).unwrap()),
            root: root.clone(),
        };
        match (search.find(), expected) {
            (Ok(found), Ok(dir)) => assert_eq!(found, root.join(dir), "{name}"),
            (Err(err), Err(text)) => {
                let message = err.to_string();
                assert!(
                    message.contains(text) && !message.contains('\n'),
                    "{name}: {message}"
                );
            }
            (found, _) => panic!("{name}: expected {expected:?}, got {found:?}"),
        }
    }
}
