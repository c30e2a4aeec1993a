//! The lint's corpus: `tests/fixtures/lint/{dangerous,safe}/*.sql`, each
//! file a migration (or several) with the exact findings expected in its
//! header comments:
//!
//! - `-- case: expect LINE:COL RULE-ID` (`allowed` after it when an
//!   `-- orch:allow` accepts it), or `-- case: expect none`;
//! - `-- case: role expand|contract|revert` (default: a plain migration;
//!   revert: a down section);
//! - `-- case: transaction false` (default: a transactional section);
//! - `-- case: then` starts another migration of the file, linted after
//!   the ones before it in the same run; one holding `-- case: history`
//!   ran before (orch only learns from it).
//!
//! Lines and columns are the file's own.

use std::path::{Path, PathBuf};

use crate::lint::{Linter, Role, Severity};
use crate::migration::Section;

struct Case {
    path: PathBuf,
    role: Role,
    transactional: bool,
    /// (section, is history)
    parts: Vec<(Section, bool)>,
    expected: Vec<String>,
}

fn read(path: &Path) -> Case {
    let text = std::fs::read_to_string(path).unwrap();
    let mut case = Case {
        path: path.to_path_buf(),
        role: Role::Plain,
        transactional: true,
        parts: Vec::new(),
        expected: Vec::new(),
    };
    // (first line index, lines, history)
    let mut parts: Vec<(usize, Vec<&str>, bool)> = vec![(0, Vec::new(), false)];
    for (index, line) in text.lines().enumerate() {
        let directive = line.strip_prefix("-- case: ").map(str::trim);
        match directive {
            Some("then") => parts.push((index + 1, Vec::new(), false)),
            Some("history") => parts.last_mut().unwrap().2 = true,
            Some("role expand") => case.role = Role::Expand,
            Some("role contract") => case.role = Role::Contract,
            Some("role revert") => case.role = Role::Revert,
            Some("transaction false") => case.transactional = false,
            Some("expect none") => {}
            Some(other) => match other.strip_prefix("expect ") {
                Some(expected) => case.expected.push(expected.to_string()),
                None => panic!("{}: unknown directive {other:?}", path.display()),
            },
            None => {}
        }
        if directive != Some("then") {
            parts.last_mut().unwrap().1.push(line);
        }
    }
    for (first, lines, history) in parts {
        let section = Section {
            path: path.to_path_buf(),
            sql: lines.join("\n") + "\n",
            marker_line: first,
            transactional: case.transactional,
            exact_columns: true,
        };
        case.parts.push((section, history));
    }
    case
}

fn findings(case: &Case) -> Vec<String> {
    let mut linter = Linter::default();
    let mut out = Vec::new();
    for (section, history) in &case.parts {
        if *history {
            linter.learn(section);
            continue;
        }
        for f in linter.lint(section, case.role) {
            assert_eq!(f.file, case.path.display().to_string());
            out.push(format!(
                "{}:{} {}{}",
                f.line,
                f.column,
                f.rule.id(),
                if f.allowed.is_some() { " allowed" } else { "" }
            ));
        }
    }
    out
}

fn cases(kind: &str) -> Vec<Case> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/lint")
        .join(kind);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    paths.sort();
    paths.iter().map(|p| read(p)).collect()
}

fn check(kind: &str) -> Vec<Case> {
    let cases = cases(kind);
    let mut wrong = Vec::new();
    for case in &cases {
        let got = findings(case);
        if got != case.expected {
            wrong.push(format!(
                "{}: expected {:?}, found {:?}",
                case.path.display(),
                case.expected,
                got
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    cases
}

#[test]
fn each_dangerous_migration_has_exactly_its_findings() {
    let cases = check("dangerous");
    assert!(cases.len() >= 25, "{} dangerous cases", cases.len());
    for case in &cases {
        assert!(!case.expected.is_empty(), "{}", case.path.display());
    }
}

#[test]
fn each_safe_migration_has_no_finding_that_blocks() {
    let cases = check("safe");
    assert!(cases.len() >= 25, "{} safe cases", cases.len());
    for case in &cases {
        let mut linter = Linter::default();
        for (section, history) in &case.parts {
            if *history {
                linter.learn(section);
            } else {
                let blocking: Vec<String> = linter
                    .lint(section, case.role)
                    .iter()
                    .filter(|f| f.blocks() || (f.severity == Severity::Warning))
                    .map(|f| f.headline())
                    .collect();
                assert!(blocking.is_empty(), "{blocking:?}");
            }
        }
    }
}
