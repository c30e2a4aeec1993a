//! A throwaway PostgreSQL server for the test harness, benchmarks and
//! `orch demo`: a fresh cluster in a temp dir, reachable only through a unix
//! socket there, and gone again when dropped or when this process dies.

mod bin_dir;
mod conninfo;
mod standby;
#[cfg(test)]
mod tests;
mod watchdog;

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::{Pid, User};
use tempfile::TempDir;
use tracing::debug;

pub use self::bin_dir::find_bin_dir;
use self::bin_dir::{is_executable, search_path};
pub use self::standby::PgStandby;
use self::watchdog::Watchdog;
use crate::{Error, Result};

const SUPERUSER: &str = "postgres";
/// Only names the socket file: the socket directory is ours alone.
const PORT: u16 = 5432;
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
const LOG_TAIL_LINES: usize = 20;
/// `sun_path` is 108 bytes including the terminating NUL.
const MAX_SOCKET_PATH: usize = 107;

/// How to run the throwaway server.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Real fsync and full-page writes (benchmarks); off by default for speed.
    pub durable: bool,
    pub max_connections: u32,
    /// Extra `-c name=value` settings, applied last so they win.
    pub settings: Vec<(String, String)>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            durable: false,
            max_connections: 300,
            settings: Vec::new(),
        }
    }
}

/// A running throwaway server. Dropping it stops the server and deletes its
/// files; if this process dies first, the watchdog does both.
#[derive(Debug)]
pub struct PgServer {
    postmaster: Child,
    // Field order is drop order: the watchdog exits before the dir goes.
    watchdog: Watchdog,
    dir: TempDir,
    bin_dir: PathBuf,
    /// Kept to start the postmaster again (`restart`).
    options: ServerOptions,
}

impl PgServer {
    /// Create a fresh cluster in a new temp dir and start it; blocking.
    pub fn start(options: ServerOptions) -> Result<PgServer> {
        let started = Instant::now();
        let bin_dir = find_bin_dir()?;
        let owner = server_owner()?;
        let dir = make_temp_dir(owner.as_ref())?;
        let mut watchdog = Watchdog::spawn(dir.path())?;
        let (data, log) = (dir.path().join("data"), dir.path().join("server.log"));

        let mut initdb = server_command(&bin_dir.join("initdb"), dir.path(), owner.as_ref(), &log)?;
        initdb
            .arg("-D")
            .arg(&data)
            .args(["--auth=trust", "-U", SUPERUSER, "-E", "UTF8"]);
        initdb.args(["--locale=C", "--no-instructions"]);
        if !options.durable {
            initdb.arg("--no-sync");
        }
        run_initdb(initdb, &mut watchdog, &log, owner.is_some())?;
        debug!(elapsed_ms = started.elapsed().as_millis(), "initdb done");

        let postmaster = spawn_postmaster(&bin_dir, dir.path(), &options)?;
        watchdog.watch(Some(postmaster.id()));
        let mut server = PgServer {
            postmaster,
            watchdog,
            dir,
            bin_dir,
            options,
        };
        server.wait_until_ready(&data.join("postmaster.pid"), &log)?;
        debug!(
            elapsed_ms = started.elapsed().as_millis(),
            socket_dir = %server.socket_dir().display(),
            "throwaway PostgreSQL ready"
        );
        Ok(server)
    }

    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn port(&self) -> u16 {
        PORT
    }

    /// The database superuser name.
    pub fn user(&self) -> &str {
        SUPERUSER
    }

    /// libpq key=value connection string, e.g.
    /// `host=/tmp/orch-pg-abc port=5432 user=postgres dbname=postgres`.
    pub fn connection_string(&self, dbname: &str) -> String {
        conninfo::connection_string(self.socket_dir(), PORT, dbname)
    }

    /// The same as a `postgresql://` URL, the socket directory percent-encoded as host.
    pub fn url(&self, dbname: &str) -> String {
        conninfo::url(self.socket_dir(), PORT, dbname)
    }

    /// Where initdb and postgres were found.
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// A client tool such as `psql` or `pgbench`: from `bin_dir`, else PATH.
    pub fn find_tool(&self, name: &str) -> Option<PathBuf> {
        let beside = self.bin_dir.join(name);
        if is_executable(&beside) {
            return Some(beside);
        }
        search_path(&std::env::var_os("PATH")?, name)
    }

    /// Stop the server the way `pg_ctl stop -m immediate` does (SIGQUIT to
    /// the postmaster: no checkpoint, crash recovery at the next start),
    /// keeping its files for `restart`. Tests use it to lose a server in
    /// the middle of work.
    pub fn stop_immediate(&mut self) {
        let pid = Pid::from_raw(self.postmaster.id() as i32);
        for signal in [Signal::SIGQUIT, Signal::SIGKILL] {
            if !matches!(self.postmaster.try_wait(), Ok(None)) {
                break;
            }
            let _ = kill(pid, signal);
            if wait_timeout(&mut self.postmaster, Duration::from_secs(10)).is_some() {
                break;
            }
        }
        self.watchdog.watch(None);
    }

    /// Start the server again on the same files and socket (after
    /// `stop_immediate`); blocking until it is ready.
    pub fn restart(&mut self) -> Result<()> {
        if matches!(self.postmaster.try_wait(), Ok(None)) {
            return Err(start_error("the server is still running".to_string()));
        }
        let data = self.dir.path().join("data");
        // A postmaster that was killed leaves its pid file saying "ready".
        let _ = fs::remove_file(data.join("postmaster.pid"));
        self.postmaster = spawn_postmaster(&self.bin_dir, self.dir.path(), &self.options)?;
        self.watchdog.watch(Some(self.postmaster.id()));
        let log = self.dir.path().join("server.log");
        self.wait_until_ready(&data.join("postmaster.pid"), &log)
    }

    /// Stop the server and delete its files (what `Drop` does).
    pub fn stop(self) {
        drop(self);
    }

    fn wait_until_ready(&mut self, pid_file: &Path, log: &Path) -> Result<()> {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if says_ready(pid_file) {
                return Ok(());
            }
            if let Ok(Some(exit)) = self.postmaster.try_wait() {
                return Err(failure(
                    &format!("postgres exited ({exit}) before it was ready"),
                    log,
                ));
            }
            if Instant::now() > deadline {
                let waited = STARTUP_TIMEOUT.as_secs();
                return Err(failure(
                    &format!("postgres was not ready after {waited} s"),
                    log,
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Fast shutdown first (SIGINT), then immediate (SIGQUIT), then SIGKILL.
    fn stop_postmaster(&mut self) {
        let pid = Pid::from_raw(self.postmaster.id() as i32);
        let steps = [
            (Signal::SIGINT, 5),
            (Signal::SIGQUIT, 2),
            (Signal::SIGKILL, 2),
        ];
        for (signal, grace_secs) in steps {
            // Checked before each signal: an unreaped child's pid is never reused.
            if !matches!(self.postmaster.try_wait(), Ok(None)) {
                break;
            }
            debug!(%pid, ?signal, "stopping throwaway PostgreSQL");
            let _ = kill(pid, signal);
            if wait_timeout(&mut self.postmaster, Duration::from_secs(grace_secs)).is_some() {
                break;
            }
        }
        self.watchdog.watch(None);
    }
}

/// The server at `DATABASE_URL` when it is set (no server is started), else
/// a throwaway one, kept running as long as the returned `PgServer` lives.
/// The settings point at its `postgres` database. Tests and benchmarks use
/// this, so both honour `DATABASE_URL` the same way.
pub fn database_url_or_throwaway(
    options: ServerOptions,
) -> Result<(Option<PgServer>, crate::connect::ConnectionSettings)> {
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => Ok((
            None,
            crate::connect::ConnectionSettings::from_connection_string(&url)?,
        )),
        _ => {
            let server = PgServer::start(options)?;
            let settings = crate::connect::ConnectionSettings::from_connection_string(
                &server.connection_string("postgres"),
            )?;
            Ok((Some(server), settings))
        }
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.stop_postmaster();
    }
}

/// PostgreSQL writes its status on the last line of postmaster.pid.
fn says_ready(pid_file: &Path) -> bool {
    let text = fs::read_to_string(pid_file).unwrap_or_default();
    text.lines()
        .last()
        .is_some_and(|line| line.trim() == "ready")
}

/// PostgreSQL refuses to run as root, so as root we run it as `postgres`.
fn server_owner() -> Result<Option<User>> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    match User::from_name(SUPERUSER) {
        Ok(Some(user)) => Ok(Some(user)),
        _ => Err(start_error(
            "running as root, which PostgreSQL refuses, and there is no `postgres` OS user to run it as; install the `postgresql` package (it creates that user) or run as a normal user".to_string(),
        )),
    }
}

/// The data dir, socket and log live here, never in the checkout: the
/// postgres user may not be able to enter that.
fn make_temp_dir(owner: Option<&User>) -> Result<TempDir> {
    let dir = tempfile::Builder::new()
        .prefix("orch-pg-")
        // Trust auth: only the owner (and root) may reach the socket.
        .permissions(fs::Permissions::from_mode(0o700))
        .tempdir()
        .map_err(|err| io_failure("cannot create a temp dir", &std::env::temp_dir(), err))?;
    let socket = dir.path().join(format!(".s.PGSQL.{PORT}"));
    if socket.as_os_str().len() > MAX_SOCKET_PATH {
        let shown = socket.display();
        return Err(start_error(format!(
            "socket path {shown} is too long; set TMPDIR to a shorter directory"
        )));
    }
    if let Some(user) = owner {
        let path = dir.path();
        nix::unistd::chown(path, Some(user.uid), Some(user.gid)).map_err(|err| {
            io_failure(
                "cannot chown the temp dir to the postgres user",
                path,
                err.into(),
            )
        })?;
    }
    Ok(dir)
}

/// A server-side command: output to the log, in its own process group (a
/// Ctrl-C reaches orch, which decides), as `owner` when we are root.
fn server_command(program: &Path, dir: &Path, owner: Option<&User>, log: &Path) -> Result<Command> {
    let open = || fs::OpenOptions::new().create(true).append(true).open(log);
    let (stdout, stderr) = open()
        .and_then(|out| Ok((out, open()?)))
        .map_err(|err| io_failure("cannot open the server log", log, err))?;
    let mut command = Command::new(program);
    command
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr);
    command.process_group(0);
    if let Some(user) = owner {
        command.uid(user.uid.as_raw()).gid(user.gid.as_raw());
    }
    Ok(command)
}

/// Start the postmaster on the cluster in `dir` (as the `postgres` OS
/// user when we are root).
fn spawn_postmaster(bin_dir: &Path, dir: &Path, options: &ServerOptions) -> Result<Child> {
    let owner = server_owner()?;
    let log = dir.join("server.log");
    let mut postgres = server_command(&bin_dir.join("postgres"), dir, owner.as_ref(), &log)?;
    postgres
        .arg("-D")
        .arg(dir.join("data"))
        .arg("-p")
        .arg(PORT.to_string());
    for (name, value) in server_settings(options, dir) {
        postgres.arg("-c").arg(format!("{name}={value}"));
    }
    spawn(&mut postgres, "postgres")
}

fn server_settings(options: &ServerOptions, socket_dir: &Path) -> Vec<(String, String)> {
    let setting = |name: &str, value: String| (name.to_string(), value);
    let mut settings = vec![
        setting("listen_addresses", String::new()),
        // Quoted: the setting is a list, and a path may hold spaces.
        setting(
            "unix_socket_directories",
            format!("\"{}\"", socket_dir.display()),
        ),
        setting("max_connections", options.max_connections.to_string()),
    ];
    if !options.durable {
        for name in ["fsync", "full_page_writes", "synchronous_commit"] {
            settings.push(setting(name, "off".to_string()));
        }
    }
    settings.extend(options.settings.iter().cloned());
    settings
}

fn run_initdb(
    mut command: Command,
    watchdog: &mut Watchdog,
    log: &Path,
    as_root: bool,
) -> Result<()> {
    let mut child = command.spawn().map_err(|err| {
        let hint = match as_root {
            // The usual cause: TMPDIR is somewhere like /root/tmp.
            true => "; as root it runs as the `postgres` user, who must be able to enter the temp dir (set TMPDIR to one it can reach, e.g. /tmp)",
            false => "",
        };
        let program = Path::new(command.get_program()).display();
        start_error(format!("cannot run initdb ({program}): {err}{hint}"))
    })?;
    watchdog.watch(Some(child.id()));
    let status = wait_timeout(&mut child, STARTUP_TIMEOUT);
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    watchdog.watch(None);
    match status {
        Some(status) if status.success() => Ok(()),
        Some(status) => Err(failure(&format!("initdb failed ({status})"), log)),
        None => Err(failure("initdb did not finish within a minute", log)),
    }
}

fn spawn(command: &mut Command, what: &str) -> Result<Child> {
    command.spawn().map_err(|err| {
        io_failure(
            &format!("cannot run {what}"),
            Path::new(command.get_program()),
            err,
        )
    })
}

/// `None` if the child is still running after `timeout`.
fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => return None,
            Ok(Some(status)) => return Some(status),
            // Only fails if the child was already reaped.
            Err(_) => return Some(ExitStatus::default()),
        }
    }
}

fn failure(what: &str, log: &Path) -> Error {
    let text = fs::read_to_string(log)
        .unwrap_or_else(|err| format!("(cannot read {}: {err})", log.display()));
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n  ");
    start_error(format!("{what}; server log:\n  {tail}"))
}

/// Exit code 7 like every start failure, so the cause goes into the message.
fn io_failure(what: &str, path: &Path, err: io::Error) -> Error {
    start_error(format!("{what} ({}): {err}", path.display()))
}

fn start_error(message: String) -> Error {
    Error::ServerStart { message }
}
