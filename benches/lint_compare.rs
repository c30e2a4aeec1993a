//! Measure: orch's lint and squawk's CLI on the same large real folder,
//! lemmy 0.19.21's 233 diesel migrations (see `common/lemmy.rs`). Runs
//! `orch check --json --migrations-dir DIR` (orch lints up sections only)
//! and `squawk --reporter json` over the same 233 `up.sql` files (no
//! `down.sql`), both with squawk's defaults and with
//! `--assume-in-transaction` (diesel runs each up.sql in a transaction, as
//! orch does); prints the findings per rule for each, the totals and run
//! times, how many of squawk's findings orch reports too (same file, a
//! corresponding rule, a line of the same statement), and a sample of the
//! differences each way to review by hand (docs/lint.md, "Measured").
//!
//!     cargo bench --bench lint_compare                     # or: -- --runs 5 --sample 20
//!     cargo bench --bench lint_compare -- --all            # every difference, not a sample
//!     cargo bench --bench lint_compare -- --dir PATH       # another folder (any format orch reads;
//!                                                          # squawk gets every *.sql but down.sql)
//!     cargo bench --bench lint_compare -- --squawk PATH    # a squawk binary obtained otherwise
//!
//! squawk is installed once with npm (`squawk-cli` at [`SQUAWK_VERSION`])
//! under the system temp dir; without npm or the network, the bench says
//! so and exits non-zero.

#[path = "common/lemmy.rs"]
mod lemmy;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use lemmy::{CRATE, CRATE_VERSION, EXPECTED_MIGRATIONS, diesel_migrations, fetch};
use serde_json::Value;

/// The squawk-cli release measured (the newest on npm when this was
/// written); `--squawk-version` picks another.
const SQUAWK_VERSION: &str = "2.66.0";

/// squawk's rules and the orch rules that report the same hazard; a
/// squawk finding is "also reported by orch" when orch reports one of
/// these on the same statement. squawk's other rules have no counterpart.
const COUNTERPARTS: &[(&str, &[&str])] = &[
    (
        "require-concurrent-index-creation",
        &["create-index-not-concurrently"],
    ),
    (
        "ban-concurrent-index-creation-in-transaction",
        &["needs-no-transaction"],
    ),
    ("transaction-nesting", &["needs-no-transaction"]),
    (
        "require-concurrent-index-deletion",
        &["drop-index-not-concurrently"],
    ),
    ("changing-column-type", &["column-type-rewrite"]),
    ("ban-drop-column", &["drop-column"]),
    ("ban-drop-table", &["drop-table"]),
    ("renaming-column", &["rename-column"]),
    ("renaming-table", &["rename-table"]),
    (
        "constraint-missing-not-valid",
        // squawk reports ADD PRIMARY KEY / UNIQUE under this rule too.
        &[
            "constraint-not-valid",
            "validate-in-same-transaction",
            "unique-without-index",
        ],
    ),
    ("adding-foreign-key-constraint", &["constraint-not-valid"]),
    ("disallowed-unique-constraint", &["unique-without-index"]),
    ("adding-serial-primary-key-field", &["unique-without-index"]),
    ("adding-not-nullable-field", &["set-not-null-scan"]),
    ("adding-required-field", &["required-column"]),
    ("adding-field-with-default", &["volatile-default"]),
];

/// Why orch has no rule for some of squawk's.
fn no_counterpart(rule: &str) -> &'static str {
    match rule {
        "require-lock-timeout" | "require-statement-timeout" => "orch's runner sets both timeouts",
        "prefer-robust-stmts" => "orch's runner: one transaction per migration",
        "ban-drop-not-null" => "not a lock hazard",
        r if r.starts_with("prefer-") || r == "identifier-too-long" => "style, not a lock",
        "require-enum-value-ordering" => "style, not a lock",
        _ => "no orch rule",
    }
}

struct Args {
    runs: usize,
    sample: usize,
    all: bool,
    dir: Option<PathBuf>,
    squawk: Option<PathBuf>,
    squawk_version: String,
}

fn args() -> Args {
    let mut args = Args {
        runs: 3,
        sample: 15,
        all: false,
        dir: None,
        squawk: None,
        squawk_version: SQUAWK_VERSION.to_string(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--runs" => args.runs = it.next().and_then(|v| v.parse().ok()).expect("--runs N"),
            "--sample" => args.sample = it.next().and_then(|v| v.parse().ok()).expect("--sample N"),
            "--all" => args.all = true,
            "--dir" => args.dir = Some(it.next().expect("--dir PATH").into()),
            "--squawk" => args.squawk = Some(it.next().expect("--squawk PATH").into()),
            "--squawk-version" => args.squawk_version = it.next().expect("--squawk-version V"),
            _ => {} // cargo bench passes --bench
        }
    }
    assert!(args.runs > 0, "--runs must be at least 1");
    args
}

/// One finding of either tool, at a 1-based line range of `file`.
#[derive(Clone)]
struct Found {
    file: PathBuf,
    line: usize,
    line_end: usize,
    rule: String,
}

fn main() -> ExitCode {
    let args = args();
    let (dir, source) = match &args.dir {
        Some(dir) => (dir.clone(), format!("folder {}", dir.display())),
        None => match fetch() {
            Ok(dir) => (
                dir,
                format!(
                    "lemmy {CRATE_VERSION}'s diesel migrations (crate {CRATE} {CRATE_VERSION})"
                ),
            ),
            Err(why) => {
                eprintln!("lint_compare: cannot obtain {CRATE} {CRATE_VERSION}: {why}");
                return ExitCode::FAILURE;
            }
        },
    };
    let files = match up_files(&dir, args.dir.is_none()) {
        Ok(files) => files,
        Err(why) => {
            eprintln!("lint_compare: {}: {why}", dir.display());
            return ExitCode::FAILURE;
        }
    };
    let squawk = match &args.squawk {
        Some(path) => path.clone(),
        None => match install_squawk(&args.squawk_version) {
            Ok(path) => path,
            Err(why) => {
                eprintln!("lint_compare: cannot install squawk-cli with npm: {why}");
                return ExitCode::FAILURE;
            }
        },
    };
    let squawk_version = match version_of(&squawk) {
        Ok(version) => version,
        Err(why) => {
            eprintln!("lint_compare: {}: {why}", squawk.display());
            return ExitCode::FAILURE;
        }
    };

    let cwd = tempfile::tempdir().unwrap(); // no .squawk.toml, no plans
    let orch = |_: ()| run_orch(&dir, cwd.path());
    let squawk_default = |_: ()| run_squawk(&squawk, &files, false, cwd.path());
    let squawk_in_tx = |_: ()| run_squawk(&squawk, &files, true, cwd.path());
    let (orch_found, orch_time) = match timed(args.runs, orch) {
        Ok(found) => found,
        Err(why) => {
            eprintln!("lint_compare: orch check: {why}");
            return ExitCode::FAILURE;
        }
    };
    let (default_found, default_time) = match timed(args.runs, squawk_default) {
        Ok(found) => found,
        Err(why) => {
            eprintln!("lint_compare: squawk: {why}");
            return ExitCode::FAILURE;
        }
    };
    let (squawk_found, squawk_time) = match timed(args.runs, squawk_in_tx) {
        Ok(found) => found,
        Err(why) => {
            eprintln!("lint_compare: squawk --assume-in-transaction: {why}");
            return ExitCode::FAILURE;
        }
    };

    let lines: usize = files
        .iter()
        .map(|f| {
            std::fs::read_to_string(f)
                .unwrap_or_default()
                .lines()
                .count()
        })
        .sum();
    println!("lint comparison: {source}");
    println!("  folder: {}", dir.display());
    println!(
        "  files: {} up.sql ({lines} lines); down.sql left out of the comparison (squawk is not given them; orch's findings in them are dropped)",
        files.len()
    );
    println!(
        "  orch check --json --migrations-dir DIR ({}):            {:>5} findings, median {:.0?} over {} runs",
        env!("CARGO_PKG_VERSION"),
        orch_found.len(),
        orch_time,
        args.runs
    );
    println!(
        "  squawk --reporter json UP.SQL... ({squawk_version}):                {:>5} findings, median {default_time:.0?}",
        default_found.len()
    );
    println!(
        "  squawk --assume-in-transaction --reporter json UP.SQL...: {:>5} findings, median {squawk_time:.0?}",
        squawk_found.len()
    );

    let also_orch = |s: &Found| {
        counterparts(&s.rule).iter().any(|rule| {
            orch_found
                .iter()
                .any(|o| o.rule == *rule && o.file == s.file && covers(s, o.line))
        })
    };
    let also_squawk = |o: &Found| {
        squawk_found.iter().any(|s| {
            counterparts(&s.rule).contains(&o.rule.as_str())
                && o.file == s.file
                && covers(s, o.line)
        })
    };

    println!();
    println!(
        "  squawk rule                                 default  in-tx  also orch  orch's rule"
    );
    let mut by_rule: BTreeMap<&str, (usize, usize, usize)> = BTreeMap::new();
    for s in &default_found {
        by_rule.entry(&s.rule).or_default().0 += 1;
    }
    for s in &squawk_found {
        let entry = by_rule.entry(&s.rule).or_default();
        entry.1 += 1;
        entry.2 += usize::from(also_orch(s));
    }
    let mut rows: Vec<_> = by_rule.into_iter().collect();
    rows.sort_by_key(|(rule, (d, t, _))| (std::cmp::Reverse((*t, *d)), *rule));
    for (rule, (default, in_tx, also)) in &rows {
        let theirs = counterparts(rule);
        let (also, theirs) = if theirs.is_empty() {
            ("-".to_string(), format!("({})", no_counterpart(rule)))
        } else {
            (also.to_string(), theirs.join(", "))
        };
        println!("  {rule:<42} {default:>8} {in_tx:>6} {also:>10}  {theirs}");
    }
    let matched_squawk = squawk_found.iter().filter(|s| also_orch(s)).count();
    println!(
        "  {:<42} {:>8} {:>6} {:>10}",
        "total",
        default_found.len(),
        squawk_found.len(),
        matched_squawk
    );

    println!();
    println!("  orch rule                         findings  also squawk (in-tx)");
    let mut by_rule: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for o in &orch_found {
        let entry = by_rule.entry(&o.rule).or_default();
        entry.0 += 1;
        entry.1 += usize::from(also_squawk(o));
    }
    let mut rows: Vec<_> = by_rule.into_iter().collect();
    rows.sort_by_key(|(rule, (n, _))| (std::cmp::Reverse(*n), *rule));
    for (rule, (n, also)) in &rows {
        println!("  {rule:<32} {n:>9} {also:>12}");
    }
    let matched_orch = orch_found.iter().filter(|o| also_squawk(o)).count();
    println!(
        "  {:<32} {:>9} {:>12}",
        "total",
        orch_found.len(),
        matched_orch
    );

    let squawk_only: Vec<&Found> = squawk_found
        .iter()
        .filter(|s| !counterparts(&s.rule).is_empty() && !also_orch(s))
        .collect();
    let orch_only: Vec<&Found> = orch_found.iter().filter(|o| !also_squawk(o)).collect();
    let limit = if args.all { usize::MAX } else { args.sample };
    println!();
    println!(
        "  squawk findings (with an orch counterpart) orch is silent on: {}{}",
        squawk_only.len(),
        sample_note(squawk_only.len(), limit)
    );
    for s in sample(&squawk_only, limit) {
        println!("{}", describe(s, &dir));
    }
    println!();
    println!(
        "  orch findings squawk lacks: {}{}",
        orch_only.len(),
        sample_note(orch_only.len(), limit)
    );
    for o in sample(&orch_only, limit) {
        println!("{}", describe(o, &dir));
    }
    ExitCode::SUCCESS
}

fn counterparts(squawk_rule: &str) -> &'static [&'static str] {
    COUNTERPARTS
        .iter()
        .find(|(rule, _)| *rule == squawk_rule)
        .map_or(&[], |(_, theirs)| theirs)
}

/// Whether `line` is in the statement squawk's finding spans.
fn covers(s: &Found, line: usize) -> bool {
    (s.line..=s.line_end).contains(&line)
}

fn sample_note(len: usize, limit: usize) -> String {
    if len > limit {
        format!(" (a sample of {limit}, round-robin over the rules, in folder order)")
    } else {
        String::new()
    }
}

/// Up to `limit` findings, taking each rule in turn so every rule shows.
fn sample<'a>(found: &[&'a Found], limit: usize) -> Vec<&'a Found> {
    let mut by_rule: BTreeMap<&str, Vec<&'a Found>> = BTreeMap::new();
    for f in found {
        by_rule.entry(&f.rule).or_default().push(f);
    }
    let mut picked = Vec::new();
    for round in 0.. {
        let before = picked.len();
        for list in by_rule.values() {
            // Spread each rule's picks over the folder.
            let step = (list.len() / limit.min(list.len()).max(1)).max(1);
            if let Some(f) = list.get(round * step)
                && picked.len() < limit
            {
                picked.push(*f);
            }
        }
        if picked.len() == before || picked.len() >= limit {
            break;
        }
    }
    picked.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
    picked
}

/// `migration/up.sql:line  rule  the statement's first line`.
fn describe(f: &Found, dir: &Path) -> String {
    let text = std::fs::read_to_string(&f.file).unwrap_or_default();
    // The finding's line and the next few, on one line.
    let words: Vec<&str> = text
        .lines()
        .skip(f.line - 1)
        .take(4)
        .flat_map(str::split_whitespace)
        .collect();
    let line: String = words.join(" ").chars().take(110).collect();
    let file = f.file.strip_prefix(dir).unwrap_or(&f.file);
    format!(
        "    {}:{}  {}\n        {line}",
        file.display(),
        f.line,
        f.rule
    )
}

/// The up.sql files of a diesel folder in diesel's order; for another
/// folder (`--dir`), every `*.sql` under it but `down.sql`.
fn up_files(dir: &Path, lemmy: bool) -> Result<Vec<PathBuf>, String> {
    if let Ok(migrations) = diesel_migrations(dir) {
        if lemmy && migrations.len() != EXPECTED_MIGRATIONS {
            return Err(format!(
                "{} migrations, expected {EXPECTED_MIGRATIONS} in {CRATE} {CRATE_VERSION}",
                migrations.len()
            ));
        }
        let outside = migrations.iter().filter(|m| !m.in_transaction).count();
        let lines: usize = migrations.iter().map(|m| m.lines).sum();
        eprintln!(
            "lint_compare: {} diesel migrations, {lines} lines of up.sql, {outside} outside a transaction",
            migrations.len()
        );
        return Ok(migrations.into_iter().map(|m| m.up).collect());
    }
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).map_err(|e| format!("cannot list: {e}"))? {
            let path = entry.map_err(|e| e.to_string())?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "sql")
                && !path.ends_with("down.sql")
                && !path.to_string_lossy().ends_with(".down.sql")
            {
                files.push(path);
            }
        }
    }
    files.sort();
    if files.is_empty() {
        return Err("no .sql files here".to_string());
    }
    Ok(files)
}

/// squawk-cli from npm under the system temp dir, installed once.
fn install_squawk(version: &str) -> Result<PathBuf, String> {
    let prefix = std::env::temp_dir().join(format!("orch-squawk-cli-{version}"));
    let bin = prefix.join("node_modules/.bin/squawk");
    if version_of(&bin).is_ok_and(|v| v.ends_with(version)) {
        return Ok(bin);
    }
    Command::new("npm")
        .arg("--version")
        .output()
        .map_err(|e| format!("npm is not installed or not on PATH ({e})"))?;
    eprintln!(
        "lint_compare: npm install squawk-cli@{version} into {}",
        prefix.display()
    );
    std::fs::create_dir_all(&prefix).map_err(|e| format!("{}: {e}", prefix.display()))?;
    let output = Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--prefix"])
        .arg(&prefix)
        .arg(format!("squawk-cli@{version}"))
        .output()
        .map_err(|e| format!("cannot run npm: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "npm install failed ({}; no network?): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    version_of(&bin)?;
    Ok(bin)
}

fn version_of(squawk: &Path) -> Result<String, String> {
    let output = Command::new(squawk)
        .arg("--version")
        .output()
        .map_err(|e| format!("cannot run: {e}"))?;
    if !output.status.success() {
        return Err(format!("--version failed ({})", output.status));
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// Run `once` `runs` times; its last result and the median time.
fn timed<T>(
    runs: usize,
    mut once: impl FnMut(()) -> Result<T, String>,
) -> Result<(T, Duration), String> {
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..runs {
        let started = Instant::now();
        last = Some(once(())?);
        times.push(started.elapsed());
    }
    times.sort();
    Ok((last.expect("runs > 0"), times[times.len() / 2]))
}

/// `orch check --json`: one JSON array of findings on stdout (exit 4 when
/// one is an error).
fn run_orch(dir: &Path, cwd: &Path) -> Result<Vec<Found>, String> {
    let output = Command::new(env!("CARGO_BIN_EXE_orch"))
        .args(["check", "--json", "--migrations-dir"])
        .arg(dir)
        .args(["--plans-dir", "/nonexistent/orch/plans"])
        .current_dir(cwd)
        .output()
        .map_err(|e| format!("cannot run: {e}"))?;
    if !matches!(output.status.code(), Some(0 | 3 | 4)) {
        return Err(format!(
            "exit {}: {}",
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    let findings: Value = serde_json::from_slice(&output.stdout)
        .map_err(|e| format!("--json printed no JSON: {e}"))?;
    Ok(findings
        .as_array()
        .into_iter()
        .flatten()
        // orch lints down sections too; squawk is given up.sql only.
        .filter(|f| !f["file"].as_str().unwrap_or_default().ends_with("down.sql"))
        .map(|f| {
            let line = f["line"].as_u64().unwrap_or(1) as usize;
            Found {
                file: PathBuf::from(f["file"].as_str().unwrap_or_default()),
                line,
                line_end: line,
                rule: f["rule"].as_str().unwrap_or_default().to_string(),
            }
        })
        .collect())
}

/// `squawk --reporter json FILES`: one JSON array, lines 0-based (exit 1
/// when it found something).
fn run_squawk(
    squawk: &Path,
    files: &[PathBuf],
    in_transaction: bool,
    cwd: &Path,
) -> Result<Vec<Found>, String> {
    let mut command = Command::new(squawk);
    if in_transaction {
        command.arg("--assume-in-transaction");
    }
    let output = command
        .args(["--reporter", "json"])
        .args(files)
        .current_dir(cwd)
        .output()
        .map_err(|e| format!("cannot run: {e}"))?;
    if !matches!(output.status.code(), Some(0 | 1)) {
        return Err(format!(
            "exit {}: {}",
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    let findings: Value = serde_json::from_slice(&output.stdout)
        .map_err(|e| format!("--reporter json printed no JSON: {e}"))?;
    Ok(findings
        .as_array()
        .into_iter()
        .flatten()
        // orch lints down sections too; squawk is given up.sql only.
        .filter(|f| !f["file"].as_str().unwrap_or_default().ends_with("down.sql"))
        .map(|f| {
            let line = f["line"].as_u64().unwrap_or(0) as usize + 1;
            Found {
                file: PathBuf::from(f["file"].as_str().unwrap_or_default()),
                line,
                line_end: (f["line_end"].as_u64().unwrap_or(0) as usize + 1).max(line),
                rule: f["rule_name"].as_str().unwrap_or_default().to_string(),
            }
        })
        .collect())
}
