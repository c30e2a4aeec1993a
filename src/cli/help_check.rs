//! Tests that keep the documentation true to clap's definitions: every
//! command and argument has a help line, and README's usage and exit codes
//! list what `--help` does.

use std::collections::BTreeSet;

use clap::CommandFactory;

use crate::cli::Cli;
use crate::error::{EXIT_CODES_HELP, listed_codes};

const README: &str = include_str!("../../README.md");

/// Every command below `cmd` (itself included), with its path from `orch`.
fn commands(cmd: &clap::Command, path: Vec<String>, out: &mut Vec<(Vec<String>, clap::Command)>) {
    out.push((path.clone(), cmd.clone()));
    for sub in cmd.get_subcommands() {
        let mut sub_path = path.clone();
        sub_path.push(sub.get_name().to_string());
        commands(sub, sub_path, out);
    }
}

fn all_commands() -> Vec<(Vec<String>, clap::Command)> {
    let mut out = Vec::new();
    commands(&Cli::command(), Vec::new(), &mut out);
    out
}

#[test]
fn every_command_and_argument_has_help() {
    Cli::command().debug_assert();
    let mut missing = Vec::new();
    for (path, cmd) in all_commands() {
        let name = format!("orch {}", path.join(" "));
        if cmd
            .get_about()
            .is_none_or(|a| a.to_string().trim().is_empty())
        {
            missing.push(format!("{name}: the command"));
        }
        for arg in cmd.get_arguments() {
            if arg
                .get_help()
                .is_none_or(|h| h.to_string().trim().is_empty())
            {
                missing.push(format!("{name}: {}", arg.get_id()));
            }
        }
    }
    assert!(missing.is_empty(), "no help text: {missing:#?}");
}

/// The usage lines of README's "## Usage" section: `    orch <command> ...`
/// (a session's `$ orch` lines are examples, not the listing).
fn readme_usage_lines() -> Vec<&'static str> {
    let usage = README
        .split("\n## Usage")
        .nth(1)
        .expect("README has a ## Usage section");
    let usage = usage.split("\n## ").next().unwrap_or(usage);
    usage
        .lines()
        .filter_map(|l| l.strip_prefix("    orch "))
        .collect()
}

/// The command path a usage line names (`migrate up [N]` -> [migrate, up]).
fn path_of(line: &str, root: &clap::Command) -> Vec<String> {
    let mut path = Vec::new();
    let mut cmd = root;
    for word in line.split_whitespace() {
        match cmd.find_subcommand(word) {
            Some(sub) => {
                path.push(word.to_string());
                cmd = sub;
            }
            None => break,
        }
    }
    path
}

#[test]
fn readme_lists_every_command_and_only_real_flags() {
    let root = Cli::command();
    let mut listed = BTreeSet::new();
    for line in readme_usage_lines() {
        let path = path_of(line, &root);
        assert!(
            !path.is_empty(),
            "README usage line names no command: orch {line}"
        );
        let cmd = path.iter().fold(&root, |c, name| {
            c.find_subcommand(name).expect("found above")
        });
        let usage = line.split(" #").next().unwrap_or(line);
        for word in usage.split(|c: char| c.is_whitespace() || "[]|".contains(c)) {
            let Some(flag) = word.strip_prefix("--") else {
                continue;
            };
            let flag = flag.split('=').next().unwrap_or(flag);
            let known = cmd
                .get_arguments()
                .chain(root.get_arguments())
                .any(|a| a.get_long() == Some(flag));
            assert!(
                known,
                "README: orch {line}: --{flag} is not an option of orch {}",
                path.join(" ")
            );
        }
        listed.insert(path);
    }
    let leaves: BTreeSet<Vec<String>> = all_commands()
        .into_iter()
        .filter(|(path, cmd)| !path.is_empty() && !cmd.has_subcommands())
        .map(|(path, _)| path)
        .collect();
    let missing: Vec<_> = leaves.difference(&listed).collect();
    assert!(
        missing.is_empty(),
        "README's usage does not list: {missing:?}"
    );
    let unknown: Vec<_> = listed.difference(&leaves).collect();
    assert!(
        unknown.is_empty(),
        "README lists commands orch lacks: {unknown:?}"
    );
}

#[test]
fn readme_exit_codes_are_the_help_listing() {
    let section = README
        .split("\n### Exit codes\n")
        .nth(1)
        .expect("README has a ### Exit codes section");
    let block: Vec<String> = section
        .lines()
        .skip_while(|l| !l.starts_with("    "))
        .take_while(|l| l.starts_with("    "))
        .map(|l| format!("  {}", &l[4..]))
        .collect();
    let readme = listed_codes(&format!("Exit codes:\n{}", block.join("\n")));
    assert!(!readme.is_empty(), "README's exit codes block is empty");
    assert_eq!(readme, listed_codes(EXIT_CODES_HELP));
}

#[test]
fn help_shows_the_example_session_and_exit_codes() {
    let help = Cli::command().render_help().to_string();
    for text in [
        "orch migrate up",
        "orch advance posts-location",
        "orch confirm posts-location --by alice",
        "orch status",
        "orch checklist posts-location",
        "Exit codes:",
    ] {
        assert!(help.contains(text), "orch --help lacks {text:?}:\n{help}");
    }
    // Every code of the listing is in the help as printed.
    let printed = listed_codes(&help);
    assert_eq!(printed, listed_codes(EXIT_CODES_HELP));
}
