//! A streaming standby of a throwaway server (tests of what a backfill does
//! when a replica lags): `pg_basebackup -R` of the primary into a data dir
//! of its own under the temp dir, started on another port with its own
//! socket directory, as the `postgres` OS user when we are root; stopped and
//! deleted when dropped, or by its watchdog if this process dies first.

use std::process::Child;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tempfile::TempDir;

use super::watchdog::Watchdog;
use super::{
    PgServer, STARTUP_TIMEOUT, conninfo, failure, make_temp_dir, server_command, server_owner,
    spawn, start_error, wait_timeout,
};
use crate::Result;

/// The standby's port (it only names its socket file, in its own directory).
const STANDBY_PORT: u16 = 5433;

/// A running standby of a `PgServer`.
#[derive(Debug)]
pub struct PgStandby {
    postmaster: Child,
    // Field order is drop order: the watchdog exits before the dir goes.
    watchdog: Watchdog,
    dir: TempDir,
}

impl PgServer {
    /// Clone this server with `pg_basebackup -R` and start the copy as a
    /// hot standby streaming from it (it reports its replay position every
    /// second); blocking until it accepts connections.
    pub fn start_standby(&self) -> Result<PgStandby> {
        let owner = server_owner()?;
        let dir = make_temp_dir(owner.as_ref())?;
        let mut watchdog = Watchdog::spawn(dir.path())?;
        let (data, log) = (dir.path().join("data"), dir.path().join("server.log"));
        let mut basebackup = server_command(
            &self.bin_dir.join("pg_basebackup"),
            dir.path(),
            owner.as_ref(),
            &log,
        )?;
        basebackup
            .arg("-D")
            .arg(&data)
            .args(["-R", "-X", "stream", "--no-sync", "-U", super::SUPERUSER])
            .arg("-h")
            .arg(self.socket_dir())
            .arg("-p")
            .arg(self.port().to_string());
        let mut child = spawn(&mut basebackup, "pg_basebackup")?;
        watchdog.watch(Some(child.id()));
        let status = wait_timeout(&mut child, STARTUP_TIMEOUT);
        if status.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        watchdog.watch(None);
        match status {
            Some(status) if status.success() => {}
            Some(status) => return Err(failure(&format!("pg_basebackup failed ({status})"), &log)),
            None => {
                return Err(failure(
                    "pg_basebackup did not finish within a minute",
                    &log,
                ));
            }
        }
        let mut postgres = server_command(
            &self.bin_dir.join("postgres"),
            dir.path(),
            owner.as_ref(),
            &log,
        )?;
        postgres
            .arg("-D")
            .arg(&data)
            .arg("-p")
            .arg(STANDBY_PORT.to_string());
        let settings = [
            ("listen_addresses", String::new()),
            (
                "unix_socket_directories",
                format!("\"{}\"", dir.path().display()),
            ),
            ("hot_standby", "on".to_string()),
            ("max_connections", self.options.max_connections.to_string()),
            ("wal_receiver_status_interval", "1s".to_string()),
        ];
        for (name, value) in settings {
            postgres.arg("-c").arg(format!("{name}={value}"));
        }
        let postmaster = spawn(&mut postgres, "postgres (standby)")?;
        watchdog.watch(Some(postmaster.id()));
        let mut standby = PgStandby {
            postmaster,
            watchdog,
            dir,
        };
        standby.wait_until_ready(&data.join("postmaster.pid"), &log)?;
        Ok(standby)
    }
}

impl PgStandby {
    /// libpq key=value connection string of the standby.
    pub fn connection_string(&self, dbname: &str) -> String {
        conninfo::connection_string(self.dir.path(), STANDBY_PORT, dbname)
    }

    /// A standby says `standby` on the last line of postmaster.pid once it
    /// accepts read-only connections.
    fn wait_until_ready(
        &mut self,
        pid_file: &std::path::Path,
        log: &std::path::Path,
    ) -> Result<()> {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            let text = std::fs::read_to_string(pid_file).unwrap_or_default();
            if text
                .lines()
                .last()
                .is_some_and(|line| matches!(line.trim(), "standby" | "ready"))
            {
                return Ok(());
            }
            if let Ok(Some(exit)) = self.postmaster.try_wait() {
                return Err(failure(
                    &format!("the standby exited ({exit}) before it was ready"),
                    log,
                ));
            }
            if Instant::now() > deadline {
                return Err(start_error(format!(
                    "the standby was not ready after {} s",
                    STARTUP_TIMEOUT.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for PgStandby {
    fn drop(&mut self) {
        let pid = Pid::from_raw(self.postmaster.id() as i32);
        for (signal, grace) in [
            (Signal::SIGINT, 5),
            (Signal::SIGQUIT, 2),
            (Signal::SIGKILL, 2),
        ] {
            if !matches!(self.postmaster.try_wait(), Ok(None)) {
                break;
            }
            let _ = kill(pid, signal);
            if wait_timeout(&mut self.postmaster, Duration::from_secs(grace)).is_some() {
                break;
            }
        }
        self.watchdog.watch(None);
    }
}
