//! The one error type of orch, and the exit code each kind of failure maps to.

use std::fmt;
use std::path::PathBuf;

/// Exit codes, decided in one place (`Error::code`) and listed in `--help`.
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0    success (also: nothing to do)
  1    a migration, phase, check or backfill failed in the database
  2    usage error (bad command-line arguments)
  3    invalid migration or plan files (nothing was run)
  4    refused by a safety rule (unconfirmed phase, changed file, irreversible step...)
  5    a lock could not be taken: another orch holds it, or lock_timeout retries ran out
  6    cannot connect to PostgreSQL
  7    cannot start a throwaway PostgreSQL (demo, tests)
  130  interrupted (Ctrl-C); the work done so far is saved and can be resumed";

/// What PostgreSQL said about a failed statement, kept field by field so the
/// operator sees message, detail, hint and SQLSTATE.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PgDiagnostic {
    pub sqlstate: String,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
    /// 1-based character position in the statement, when PostgreSQL gave one.
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

    /// Several input problems found in one pass, reported together.
    #[error("{}", render_list(.0))]
    Invalid(Vec<Error>),

    #[error("cannot connect to PostgreSQL ({target}): {reason}")]
    Connect { target: String, reason: String },

    #[error("cannot start a throwaway PostgreSQL: {message}")]
    ServerStart { message: String },

    #[error("{path}:{line}: migration {name} failed: {diagnostic}{}", applied_note(.applied_before_failure))]
    MigrationFailed {
        path: PathBuf,
        name: String,
        line: usize,
        diagnostic: Box<PgDiagnostic>,
        /// For `transaction:false` sections: statements that did run.
        applied_before_failure: usize,
    },

    /// A safety rule stopped the command before it changed anything.
    #[error("{message}{}", next_step(.next))]
    Refused {
        message: String,
        next: Option<String>,
    },

    /// Another orch process holds the lock we need.
    #[error("{what} is locked by another orch process (pid {pid}, application_name {application_name:?}{}); waited {waited_ms} ms", since_note(.since))]
    Busy {
        what: String,
        pid: i32,
        application_name: String,
        since: Option<String>,
        waited_ms: u64,
    },

    /// A DDL statement kept timing out on a table lock held by someone else.
    #[error("{message}")]
    LockTimeout { message: String },

    /// A check, phase or backfill batch failed in the database.
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

fn applied_note(count: &usize) -> String {
    match count {
        0 => String::new(),
        n => format!(
            "\n  note: this section runs outside a transaction; its first {n} statement(s) did run and stay applied, the migration is NOT recorded"
        ),
    }
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
            Error::InvalidMigration { .. } | Error::InvalidPlan { .. } => 3,
            Error::Invalid(list) => list.first().map_or(3, Error::code),
            Error::Refused { .. } => 4,
            Error::Busy { .. } | Error::LockTimeout { .. } => 5,
            Error::Connect { .. } => 6,
            Error::ServerStart { .. } => 7,
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

    pub fn failed(message: impl Into<String>) -> Error {
        Error::Failed {
            message: message.into(),
        }
    }
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
