//! `orch completions SHELL` and `orch man`: generated from the same clap
//! definitions as the parser, so they cannot drift from it.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::Cli;
use crate::error::{Error, Result};

/// Write the completion script for `shell` to stdout.
pub fn completions(shell: Shell) -> Result<()> {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "orch", &mut out);
    write_stdout(&out)
}

/// Write orch(1) to stdout, or every command's page into `dir`.
pub fn man(dir: Option<&Path>) -> Result<()> {
    match dir {
        None => write_stdout(&man_page()?),
        Some(dir) => {
            let paths = man_pages_to(dir)?;
            println!("wrote {} man pages to {}", paths.len(), dir.display());
            Ok(())
        }
    }
}

/// orch(1) as roff: the commands, options and (as EXTRA) the example
/// session and the exit codes of `--help`.
pub fn man_page() -> Result<Vec<u8>> {
    let mut out = Vec::new();
    clap_mangen::Man::new(Cli::command())
        .render(&mut out)
        .map_err(|e| Error::failed(format!("cannot render the man page: {e}")))?;
    Ok(out)
}

/// orch.1, orch-migrate.1, orch-migrate-up.1, ... in `dir` (which must exist).
fn man_pages_to(dir: &Path) -> Result<Vec<PathBuf>> {
    fn walk(cmd: clap::Command, dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned() {
            walk(sub, dir, out)?;
        }
        let man = clap_mangen::Man::new(cmd);
        let path = dir.join(man.get_filename());
        man.generate_to(dir)
            .map_err(|e| Error::io("cannot write a man page", &path, e))?;
        out.push(path);
        Ok(())
    }
    if !dir.is_dir() {
        return Err(Error::Usage(format!(
            "--dir {}: no such directory (create it first)",
            dir.display()
        )));
    }
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut out = Vec::new();
    walk(cmd, dir, &mut out)?;
    Ok(out)
}

fn write_stdout(bytes: &[u8]) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => Ok(()),
        // `orch man | head` closing the pipe early is not a failure.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Error::io("cannot write to stdout", "<stdout>", e)),
    }
}
