//! The one error type of orch, and the exit code each kind of failure maps to.

use std::fmt;
use std::path::PathBuf;

/// Exit codes, decided in one place (`Error::code`) and listed in `--help`
/// and in README.md (tests keep the three in step).
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0    success (also: nothing to do)
  1    a migration, phase or backfill failed in the database
  2    usage error (bad command-line arguments)
  3    invalid migration, plan or config files (nothing was run)
  4    refused by a safety rule (unconfirmed phase, changed file, irreversible step,
       a lint error in a migration about to run...)
  5    a lock could not be taken (another orch holds it, lock_timeout retries ran out,
       statements of an earlier orch still run) or a held lock was lost mid-work
  6    cannot connect to PostgreSQL
  7    cannot start a throwaway PostgreSQL (demo, tests)
  8    a check or guard did not hold (confirm, advance, a check phase)
  9    status --exit-code: something waits (migrate status: a migration is pending,
       changed, missing or dirty; status: a plan waits on the operator)
  130  interrupted (Ctrl-C); the work done so far is saved and can be resumed";

/// What PostgreSQL said about a failed statement, kept field by field so the
/// operator sees message, detail, hint and SQLSTATE.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PgDiagnostic {
    pub sqlstate: String,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
    /// 1-based character position in the SQL orch sent (for a migration
    /// script, in the script as written, without orch's lock probes), when
    /// PostgreSQL gave one.
    pub position: Option<u32>,
    pub context: Option<String>,
}

impl PgDiagnostic {
    /// Extract the diagnostic from a driver error; `None` when the error did
    /// not come from the server (e.g. the connection dropped).
    pub fn from_driver(err: &tokio_postgres::Error) -> Option<PgDiagnostic> {
        let db = err.as_db_error()?;
        Some(PgDiagnostic {
            sqlstate: db.code().code().to_string(),
            message: db.message().to_string(),
            detail: db.detail().map(str::to_string),
            hint: db.hint().map(str::to_string),
            position: match db.position() {
                Some(tokio_postgres::error::ErrorPosition::Original(p)) => Some(*p),
                _ => None,
            },
            context: db.where_().map(str::to_string),
        })
    }
}

impl fmt::Display for PgDiagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (SQLSTATE {})", self.message, self.sqlstate)?;
        if let Some(detail) = &self.detail {
            write!(f, "\n  DETAIL: {detail}")?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "\n  HINT: {hint}")?;
        }
        if let Some(context) = &self.context {
            write!(f, "\n  CONTEXT: {context}")?;
        }
        Ok(())
    }
}

/// Every failure orch reports. Messages say what failed, where, and what to
/// run next; causes are rendered once by the reporter, never embedded here.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}:{line}: {message}")]
    InvalidMigration {
        path: PathBuf,
        line: usize,
        message: String,
    },

    #[error("{path}:{line}:{column}: {field}: {message}")]
    InvalidPlan {
        path: PathBuf,
        line: usize,
        column: usize,
        field: String,
        message: String,
    },

    /// orch.toml (or .env) is not valid: where, which key, why.
    #[error("{path}:{line}:{column}: {message}")]
    InvalidConfig {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },

    /// Several input problems found in one pass, reported together.
    #[error("{}", render_list(.0))]
    Invalid(Vec<Error>),

    #[error("cannot connect to PostgreSQL ({target}): {reason}")]
    Connect { target: String, reason: String },

    #[error("cannot start a throwaway PostgreSQL: {message}")]
    ServerStart { message: String },

    #[error("{path}:{line}{}: migration {name} failed: {diagnostic}{}", column_note(.column), applied_note(.applied_before_failure, .recorded_dirty))]
    MigrationFailed {
        path: PathBuf,
        name: String,
        /// Where PostgreSQL's error position points, when it gave one;
        /// else the line where the failing statement starts.
        line: usize,
        /// The position's column (in characters), when it gave one.
        column: Option<usize>,
        diagnostic: Box<PgDiagnostic>,
        /// For `transaction:false` sections: statements that did run.
        applied_before_failure: usize,
        /// The version recorded as dirty because of those statements.
        recorded_dirty: Option<i64>,
    },

    /// A safety rule stopped the command before it changed anything.
    #[error("{message}{}", next_step(.next))]
    Refused {
        message: String,
        next: Option<String>,
    },

    /// The lint found errors nobody allowed with `-- orch:allow`; nothing
    /// ran. `syntax`: one of them is a syntax error (invalid input).
    #[error(
        "{message}\n  next: fix each, or accept one with a comment on the line before its statement: `-- orch:allow RULE-ID: why it is safe here` (docs/lint.md)"
    )]
    Lint { message: String, syntax: bool },

    /// A check or guard ran and did not hold: the operator's world is not
    /// yet as the plan needs it (not a fault of orch or the database).
    #[error("{message}{}", next_step(.next))]
    CheckFailed {
        message: String,
        next: Option<String>,
    },

    /// `status --exit-code` found something waiting (pending migrations, a
    /// plan waiting on the operator); the status itself was printed.
    #[error("{summary}")]
    Waiting { summary: String },

    /// Another orch process holds the lock we need.
    #[error("{what} is locked by another orch process (pid {pid}, application_name {application_name:?}{}); waited {waited_ms} ms", since_note(.since))]
    Busy {
        what: String,
        pid: i32,
        application_name: String,
        since: Option<String>,
        waited_ms: u64,
    },

    /// A lock this process held was lost while it worked (its session was
    /// terminated or its connection cut): it stopped and recorded nothing more.
    #[error("{message}\n  next: {next}")]
    LockLost { message: String, next: String },

    /// A DDL statement kept timing out on a table lock held by someone else.
    #[error("{message}")]
    LockTimeout { message: String },

    /// A phase or backfill batch failed in the database.
    #[error("{message}")]
    Failed { message: String },

    #[error("{context}: {diagnostic}")]
    Sql {
        context: String,
        diagnostic: Box<PgDiagnostic>,
    },

    #[error("{context}")]
    Database {
        context: String,
        #[source]
        source: tokio_postgres::Error,
    },

    #[error("{context}: {path}")]
    Io {
        context: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{0}")]
    Usage(String),

    /// `--targets`: the command failed on some targets (each named, with
    /// its error, in the table printed before); `code` is the exit code of
    /// the first of them, in target order.
    #[error("{message}")]
    Targets { message: String, code: i32 },

    #[error("interrupted; {resume}")]
    Interrupted { resume: String },
}

fn render_list(errors: &[Error]) -> String {
    let lines: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    lines.join("\n")
}

fn next_step(next: &Option<String>) -> String {
    match next {
        Some(cmd) => format!("\n  next: {cmd}"),
        None => String::new(),
    }
}

fn since_note(since: &Option<String>) -> String {
    match since {
        Some(s) => format!(", holding it since {s}"),
        None => String::new(),
    }
}

fn column_note(column: &Option<usize>) -> String {
    column.map(|c| format!(":{c}")).unwrap_or_default()
}

fn applied_note(count: &usize, dirty: &Option<i64>) -> String {
    match (count, dirty) {
        (_, Some(version)) => format!(
            "\n  note: this section runs outside a transaction; its first {count} statement(s) did run and stay applied{}",
            dirty_note(*version)
        ),
        (0, None) => String::new(),
        (n, None) => format!(
            "\n  note: this section runs outside a transaction; its first {n} statement(s) did run and stay applied, the migration is NOT recorded"
        ),
    }
}

/// What a failure that left migration `version` dirty adds to its message:
/// orch now refuses to go on, and how to tell it the database is fixed.
pub fn dirty_note(version: i64) -> String {
    format!(
        "; the migration is recorded as dirty, and orch runs no migration until it is resolved: fix the database by hand (finish or undo what the section did), then `orch migrate resolve {version} --applied` or `orch migrate resolve {version} --rolled-back`"
    )
}

impl Error {
    /// The process exit code for this error (listed in `EXIT_CODES_HELP`).
    pub fn code(&self) -> i32 {
        match self {
            Error::Failed { .. }
            | Error::MigrationFailed { .. }
            | Error::Sql { .. }
            | Error::Database { .. }
            | Error::Io { .. } => 1,
            Error::Usage(_) => 2,
            Error::Targets { code, .. } => *code,
            Error::InvalidMigration { .. }
            | Error::InvalidPlan { .. }
            | Error::InvalidConfig { .. } => 3,
            Error::Invalid(list) => list.first().map_or(3, Error::code),
            Error::Refused { .. } => 4,
            Error::Lint { syntax, .. } => {
                if *syntax {
                    3
                } else {
                    4
                }
            }
            Error::Busy { .. } | Error::LockTimeout { .. } | Error::LockLost { .. } => 5,
            Error::Connect { .. } => 6,
            Error::ServerStart { .. } => 7,
            Error::CheckFailed { .. } => 8,
            Error::Waiting { .. } => 9,
            Error::Interrupted { .. } => 130,
        }
    }

    /// Wrap a driver error with what orch was doing; server-side errors keep
    /// their SQLSTATE, detail and hint.
    pub fn db(context: impl Into<String>, source: tokio_postgres::Error) -> Error {
        let context = context.into();
        match PgDiagnostic::from_driver(&source) {
            Some(diagnostic) => Error::Sql {
                context,
                diagnostic: Box::new(diagnostic),
            },
            None => Error::Database { context, source },
        }
    }

    pub fn io(
        context: impl Into<String>,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Error {
        Error::Io {
            context: context.into(),
            path: path.into(),
            source,
        }
    }

    pub fn refused(message: impl Into<String>, next: Option<String>) -> Error {
        Error::Refused {
            message: message.into(),
            next,
        }
    }

    pub fn check_failed(message: impl Into<String>, next: Option<String>) -> Error {
        Error::CheckFailed {
            message: message.into(),
            next,
        }
    }

    pub fn failed(message: impl Into<String>) -> Error {
        Error::Failed {
            message: message.into(),
        }
    }
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
/// The codes a listing like `EXIT_CODES_HELP` holds (the lines after
/// "Exit codes:"), each with its text, continuation lines joined.
pub(crate) fn listed_codes(text: &str) -> Vec<(i32, String)> {
    let mut out: Vec<(i32, String)> = Vec::new();
    for line in text
        .lines()
        .skip_while(|l| !l.starts_with("Exit codes:"))
        .skip(1)
    {
        let Some(rest) = line.strip_prefix("  ") else {
            break;
        };
        let trimmed = rest.trim_start();
        let (first, tail) = trimmed.split_once(' ').unwrap_or((trimmed, ""));
        match first.parse::<i32>() {
            Ok(code) if rest == trimmed => out.push((code, tail.trim().to_string())),
            _ => {
                let last = out.last_mut().expect("a continuation follows a code");
                last.1.push(' ');
                last.1.push_str(trimmed);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One error of every variant. The match in `variant` fails to compile
    /// when a variant is added, as a reminder to add it here too.
    fn every_variant() -> Vec<Error> {
        let io = || std::io::Error::other("disk on fire");
        let all = vec![
            Error::InvalidMigration {
                path: "m.sql".into(),
                line: 1,
                message: "m".into(),
            },
            Error::InvalidPlan {
                path: "p.yaml".into(),
                line: 1,
                column: 1,
                field: "f".into(),
                message: "m".into(),
            },
            Error::Invalid(vec![Error::Usage("u".into())]),
            Error::Connect {
                target: "t".into(),
                reason: "r".into(),
            },
            Error::ServerStart {
                message: "m".into(),
            },
            Error::MigrationFailed {
                path: "m.sql".into(),
                name: "n".into(),
                line: 1,
                column: None,
                diagnostic: Box::default(),
                applied_before_failure: 0,
                recorded_dirty: None,
            },
            Error::refused("r", None),
            Error::check_failed("c", None),
            Error::Waiting {
                summary: "s".into(),
            },
            Error::Busy {
                what: "w".into(),
                pid: 1,
                application_name: "a".into(),
                since: None,
                waited_ms: 0,
            },
            Error::LockTimeout {
                message: "m".into(),
            },
            Error::LockLost {
                message: "m".into(),
                next: "n".into(),
            },
            Error::failed("f"),
            Error::Sql {
                context: "c".into(),
                diagnostic: Box::default(),
            },
            Error::Database {
                context: "c".into(),
                // The driver has no public constructor; this is its own
                // stand-in for an error that did not come from the server.
                source: tokio_postgres::Error::__private_api_timeout(),
            },
            Error::io("c", "p", io()),
            Error::Usage("u".into()),
            Error::Targets {
                message: "m".into(),
                code: 1,
            },
            Error::InvalidConfig {
                path: "orch.toml".into(),
                line: 1,
                column: 1,
                message: "m".into(),
            },
            Error::Interrupted { resume: "r".into() },
            Error::Lint {
                message: "m".into(),
                syntax: false,
            },
            Error::Lint {
                message: "m".into(),
                syntax: true,
            },
        ];
        for error in &all {
            variant(error);
        }
        all
    }

    fn variant(error: &Error) -> &'static str {
        match error {
            Error::InvalidMigration { .. } => "InvalidMigration",
            Error::InvalidPlan { .. } => "InvalidPlan",
            Error::Invalid(_) => "Invalid",
            Error::Connect { .. } => "Connect",
            Error::ServerStart { .. } => "ServerStart",
            Error::MigrationFailed { .. } => "MigrationFailed",
            Error::Refused { .. } => "Refused",
            Error::CheckFailed { .. } => "CheckFailed",
            Error::Waiting { .. } => "Waiting",
            Error::Busy { .. } => "Busy",
            Error::LockTimeout { .. } => "LockTimeout",
            Error::LockLost { .. } => "LockLost",
            Error::Failed { .. } => "Failed",
            Error::Sql { .. } => "Sql",
            Error::Database { .. } => "Database",
            Error::Io { .. } => "Io",
            Error::Usage(_) => "Usage",
            Error::Targets { .. } => "Targets",
            Error::InvalidConfig { .. } => "InvalidConfig",
            Error::Interrupted { .. } => "Interrupted",
            Error::Lint { .. } => "Lint",
        }
    }

    #[test]
    fn every_code_is_listed_and_every_listed_code_is_used() {
        let listed: Vec<i32> = listed_codes(EXIT_CODES_HELP)
            .iter()
            .map(|(c, _)| *c)
            .collect();
        assert_eq!(listed, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 130]);
        let mut used = vec![0];
        for error in every_variant() {
            let code = error.code();
            assert!(
                listed.contains(&code),
                "{} exits {code}, which --help does not list",
                variant(&error)
            );
            used.push(code);
        }
        for code in listed {
            assert!(
                used.contains(&code),
                "--help lists {code}, which no error gives"
            );
        }
    }

    #[test]
    fn checks_and_guards_have_their_own_code() {
        let check = Error::check_failed("a check failed", None).code();
        assert_ne!(check, Error::refused("not confirmed", None).code());
        assert_ne!(check, Error::failed("failed").code());
    }
}
