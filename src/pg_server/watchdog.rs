//! The watchdog that cleans up a throwaway server when its owning process
//! dies without running destructors (a `static` server, Ctrl-C, `kill -9`).

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};

use tracing::debug;

use super::spawn;
use crate::Result;

/// Runs after we are gone: reads the pid to guard from a pipe only our process
/// holds; at EOF (we exited, however) kills it and deletes the temp dir ($1).
/// A zombie counts as dead: PID 1 in a container may be slow to reap it.
const WATCHDOG_SCRIPT: &str = r#"trap '' INT HUP
alive() {
  kill -0 "$1" 2>/dev/null || return 1
  ! { read -r _ _ state _ <"/proc/$1/stat" && [ "$state" = Z ]; } 2>/dev/null
}
pid=
while read -r line; do pid=$line; done
if [ -n "$pid" ] && kill -QUIT "$pid" 2>/dev/null; then
  i=0
  while alive "$pid" && [ "$i" -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
  alive "$pid" && kill -KILL "$pid"
fi
rm -rf "$1"
"#;

/// A `sh` process running `WATCHDOG_SCRIPT`. Its stdin pipe is CLOEXEC (as
/// all std pipes are), so no other child keeps it open after we exit.
#[derive(Debug)]
pub(super) struct Watchdog {
    pub(super) child: Child,
    pub(super) pipe: Option<ChildStdin>,
}

impl Watchdog {
    pub(super) fn spawn(dir: &Path) -> Result<Watchdog> {
        let mut command = Command::new("/bin/sh");
        command
            .args(["-c", WATCHDOG_SCRIPT, "orch-pg-watchdog"])
            .arg(dir);
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        command.current_dir("/").process_group(0);
        let mut child = spawn(&mut command, "the watchdog")?;
        let pipe = child.stdin.take();
        Ok(Watchdog { child, pipe })
    }

    /// Which process to kill if we die; `None` once it has been reaped.
    pub(super) fn watch(&mut self, pid: Option<u32>) {
        let line = pid.map(|pid| pid.to_string()).unwrap_or_default();
        if let Some(Err(err)) = self.pipe.as_mut().map(|pipe| writeln!(pipe, "{line}")) {
            debug!(%err, "cannot talk to the watchdog");
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        drop(self.pipe.take());
        let _ = self.child.wait();
    }
}
