//! The command line: clap types only.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use clap_complete::Shell;

use crate::config::Config;
use crate::engine::lock_retry::LockRetryPolicy;
use crate::error::EXIT_CODES_HELP;
use crate::migration::source::Format;
use crate::plan::tuning;
use crate::timefmt::{parse_duration, parse_duration_with_unit, parse_lock_timeout};

/// A whole number for a flag.
fn number<T: std::str::FromStr>(text: &str) -> Result<T, String> {
    text.trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a whole number"))
}

/// A short session on the canonical plan, shown by `orch --help`.
pub const EXAMPLE_HELP: &str = "\
Example (plans/posts-location.yaml: add loc, deploy, backfill, deploy, drop lat and lng):
  orch migrate up                           # plain migrations; stops before a plan's own
  orch advance posts-location               # phase 1: add the loc column
  orch confirm posts-location --by alice --note \"loc is there\"
  orch advance posts-location               # phase 2: a deploy gate opens; deploy, then confirm
  orch confirm posts-location --by alice    # its checks must hold first (else exit 8)
  orch status                               # every plan: phase k of n, what it waits on
  orch checklist posts-location             # the plan as a Markdown release checklist";

/// What `orch --help` shows after the commands: the example, then the exit codes.
fn after_help() -> String {
    format!("{EXAMPLE_HELP}\n\n{EXIT_CODES_HELP}")
}

/// orch: change the schema of a live PostgreSQL database without downtime.
#[derive(Debug, Parser)]
#[command(name = "orch", version, after_help = after_help())]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Connection string (URL or key=value). Default: $DATABASE_URL, else libpq's PG* variables, else the sockets in /var/run/postgresql, /tmp.
    #[arg(long, global = true, value_name = "URL")]
    pub database_url: Option<String>,

    /// More log output on stderr (-v info, -vv debug); RUST_LOG also works.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Directory of migration files (default: orch.toml's migrations_dir, else migrations).
    #[arg(long, global = true, env = "ORCH_MIGRATIONS_DIR", value_name = "DIR")]
    pub migrations_dir: Option<PathBuf>,

    /// Format of the migrations folder (default: orch.toml's format, else detected from its files).
    #[arg(long, global = true, env = "ORCH_MIGRATIONS_FORMAT", value_name = "NAME", value_parser = parse_format)]
    pub format: Option<Format>,

    /// Directory of plan files (default: orch.toml's plans_dir, else plans).
    #[arg(long, global = true, env = "ORCH_PLANS_DIR", value_name = "DIR")]
    pub plans_dir: Option<PathBuf>,

    /// The config file (default: orch.toml in the current directory or the nearest parent that has one).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// How DDL waits for table locks, and for other orch processes.
#[derive(Debug, Clone, Args)]
pub struct LockArgs {
    /// lock_timeout of each attempt: the longest the application may queue behind our DDL (not 0; default: orch.toml's, else 500ms).
    #[arg(long, env = "ORCH_LOCK_TIMEOUT", value_name = "DURATION", value_parser = parse_lock_timeout)]
    pub lock_timeout: Option<Duration>,

    /// Escalate lock_timeout linearly up to this over the retries (default: no escalation).
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub lock_timeout_max: Option<Duration>,

    /// Retries after a lock timeout, with backoff and jitter (default: orch.toml's, else 10).
    #[arg(long, env = "ORCH_LOCK_RETRIES", value_name = "N")]
    pub lock_retries: Option<u32>,

    /// statement_timeout for migration statements (0 = none; CONCURRENTLY statements never get one; default: orch.toml's, else 60s).
    #[arg(long, env = "ORCH_STATEMENT_TIMEOUT", value_name = "DURATION", value_parser = parse_duration)]
    pub statement_timeout: Option<Duration>,

    /// How long to wait for another orch process holding the lock.
    #[arg(long, env = "ORCH_LOCK_WAIT", default_value = "5s", value_parser = parse_duration)]
    pub lock_wait: Duration,

    /// Cancel (then terminate) statements an earlier, killed orch left running on the plan or migrations, instead of waiting for them.
    #[arg(long)]
    pub cancel_orphans: bool,
}

/// How commands that record history without running DDL wait for
/// another orch process (they take the migration lock, nothing else).
#[derive(Debug, Clone, Args)]
pub struct WaitArgs {
    /// How long to wait for another orch process holding the lock.
    #[arg(long, env = "ORCH_LOCK_WAIT", default_value = "5s", value_parser = parse_duration)]
    pub lock_wait: Duration,

    /// Cancel (then terminate) statements an earlier, killed orch left running on the migrations, instead of waiting for them.
    #[arg(long)]
    pub cancel_orphans: bool,
}

impl WaitArgs {
    /// The lock options these stand for (the DDL ones at their defaults).
    pub fn locks(&self) -> LockArgs {
        LockArgs {
            lock_wait: self.lock_wait,
            cancel_orphans: self.cancel_orphans,
            ..LockArgs::defaults()
        }
    }
}

impl LockArgs {
    /// None given, for commands that take no lock options (orch.toml's
    /// settings, else orch's defaults, apply).
    pub fn defaults() -> LockArgs {
        LockArgs {
            lock_timeout: None,
            lock_timeout_max: None,
            lock_retries: None,
            statement_timeout: None,
            lock_wait: Duration::from_secs(5),
            cancel_orphans: false,
        }
    }

    /// The policy these flags (or their variables) give, else `config`'s
    /// settings, else orch's defaults (500ms, 10 retries, 60s).
    pub fn policy(&self, config: &Config) -> LockRetryPolicy {
        let lock_timeout = self
            .lock_timeout
            .or(config.lock_timeout)
            .unwrap_or(Duration::from_millis(500));
        LockRetryPolicy {
            lock_timeout,
            lock_timeout_max: self.lock_timeout_max.unwrap_or(lock_timeout),
            retries: self.lock_retries.or(config.lock_retries).unwrap_or(10),
            statement_timeout: self
                .statement_timeout
                .or(config.statement_timeout)
                .unwrap_or(Duration::from_secs(60)),
            ..LockRetryPolicy::default()
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Versioned SQL migrations: create, up, down, redo, status; adopt, baseline, resolve.
    Migrate {
        #[command(subcommand)]
        command: MigrateCommand,
    },
    /// Every plan at a glance: phase k of n, state, since when, what it waits on.
    Status {
        /// Only this plan (its file name without .yaml), with its phases in detail.
        plan: Option<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// Exit 9 when a plan waits on the operator (gate open, done and unconfirmed, failed, paused, interrupted).
        #[arg(long)]
        exit_code: bool,
        #[command(flatten)]
        fleet: FleetArgs,
        /// List the rows a command backfill's program rejected or left out (needs PLAN).
        #[arg(long, requires = "plan")]
        errors: bool,
    },
    /// Run the next phase of a plan, if the phase before it is confirmed.
    Advance {
        /// The plan's name: its file in the plans directory without .yaml (e.g. posts-location).
        plan: String,
        /// Print what the next phase would do (its SQL, guard and checks, a backfill's table, key, rows and batches); change nothing.
        #[arg(long)]
        dry_run: bool,
        /// With --targets: run the phase on the first K targets that can run it, and stop there; the next advance does the rest.
        #[arg(long, value_name = "K", requires = "targets", value_parser = positive)]
        canary: Option<usize>,
        #[command(flatten)]
        locks: LockArgs,
        #[command(flatten)]
        backfill: BackfillArgs,
        #[command(flatten)]
        checks: CheckArgs,
        #[command(flatten)]
        fleet: FleetArgs,
    },
    /// Record the operator's confirmation of a phase (its checks must pass first).
    Confirm {
        /// The plan's name: its file in the plans directory without .yaml (e.g. posts-location).
        plan: String,
        /// Phase id or number (default: the phase waiting for confirmation).
        phase: Option<String>,
        /// Who confirms (recorded with the time).
        #[arg(long, env = "ORCH_OPERATOR", value_name = "NAME")]
        by: String,
        /// A note kept with the confirmation (e.g. the release or ticket).
        #[arg(long, value_name = "TEXT")]
        note: Option<String>,
        #[command(flatten)]
        locks: LockArgs,
        #[command(flatten)]
        checks: CheckArgs,
        #[command(flatten)]
        fleet: FleetArgs,
    },
    /// Undo one phase (the one named, else the latest that ran), where its kind allows it.
    ///
    /// A rollback acts once. With PHASE, a phase already rolled back (pending)
    /// is a no-op with exit 0. Without PHASE, orch infers the latest phase that
    /// ran, records that it inferred it, and goes back one phase at most: when
    /// the plan's last change was a rollback, it does nothing (exit 0) and
    /// names the command that would undo the next phase. A rollback that finds
    /// the plan moved while it waited for another orch's lock does nothing
    /// either: exit 0 when that orch rolled back, else exit 4.
    Rollback {
        /// The plan's name: its file in the plans directory without .yaml (e.g. posts-location).
        plan: String,
        /// Phase id or number to undo (default: the latest phase that ran, see above).
        phase: Option<String>,
        /// Also roll back an irreversible phase (accepting what it says would be lost; the log says it was forced).
        #[arg(long)]
        force: bool,
        /// Who rolls back (recorded in the event log; default: $ORCH_OPERATOR, else user@host).
        #[arg(long, value_name = "NAME")]
        by: Option<String>,
        /// A note kept with the rollback (e.g. why, or the incident).
        #[arg(long, value_name = "TEXT")]
        note: Option<String>,
        #[command(flatten)]
        locks: LockArgs,
        #[command(flatten)]
        fleet: FleetArgs,
    },
    /// Ask a running backfill to stop after its current batch (resume with advance).
    Pause {
        /// The plan whose backfill should stop (its file name without .yaml).
        plan: String,
    },
    /// Re-run a finished backfill phase over the rows that still match its where (e.g. rows an old app version wrote since).
    Backfill {
        /// The plan's name: its file in the plans directory without .yaml (e.g. posts-location).
        plan: String,
        /// Phase id or number of a backfill phase that ran (done or confirmed).
        phase: String,
        #[command(flatten)]
        locks: LockArgs,
        #[command(flatten)]
        backfill: BackfillArgs,
    },
    /// A plan as a Markdown release checklist, with live state (from the plan file alone when no database is configured).
    Checklist {
        /// The plan's name: its file in the plans directory without .yaml (e.g. posts-location).
        plan: String,
        #[command(flatten)]
        fleet: FleetArgs,
    },
    /// The posts plan under live simulated traffic, on a throwaway PostgreSQL.
    Demo(DemoArgs),
    /// Wait until the database accepts connections (for scripts and containers).
    ///
    /// Tries to connect, with a pause between attempts that grows from 100ms
    /// to 1s, until a connection succeeds (exit 0) or --timeout has passed
    /// (exit 6, with the last attempt's error). It prints on stderr what it
    /// waits for: each socket or server it tries, in order. A host that is an
    /// absolute path is a socket directory, as in libpq; with no host anywhere
    /// orch tries /var/run/postgresql (Debian's libpq) then /tmp (upstream's),
    /// those that exist. Every connection error (no socket yet, connection
    /// refused, the server starting up, a role or database not created yet) is
    /// retried until the timeout.
    Wait {
        /// Give up after this long (with a unit: 60s, 2m; 0 makes one attempt).
        #[arg(long, default_value = "60s", value_parser = parse_duration_with_unit, value_name = "DURATION")]
        timeout: Duration,
    },
    /// Validate plans and migrations without a database (for CI), and lint every migration.
    ///
    /// The lint (docs/lint.md) reports what would hold a lock too long or
    /// break the application still running, each finding as
    /// `file:line:col: rule-id: severity: message` with the lock and the
    /// safe recipe; syntax errors at their line and column. An error that no
    /// `-- orch:allow RULE-ID: reason` accepts makes check exit non-zero.
    Check {
        /// Only these plans (default: all).
        plans: Vec<String>,
        /// Also check against the database: each phase against the schema as it will be when the phase runs (the plan's pending migrations applied in a transaction that is rolled back): backfill tables and keys, guards and checks; the lint reads table sizes and column types.
        #[arg(long)]
        online: bool,
        /// Print the lint's findings as one JSON array on stdout (other lines go to stderr), for CI annotations.
        #[arg(long)]
        json: bool,
    },
    /// Plans written for you: `orch plan new RECIPE NAME ...` (docs/recipes.md).
    Plan {
        #[command(subcommand)]
        command: PlanCommand,
    },
    /// Print a shell completion script on stdout (bash, zsh, fish, powershell, elvish).
    ///
    /// For example: `orch completions bash > ~/.local/share/bash-completion/completions/orch`,
    /// `orch completions zsh > ~/.zfunc/_orch`, `orch completions fish > ~/.config/fish/completions/orch.fish`.
    Completions {
        /// The shell to complete for.
        shell: Shell,
    },
    /// Print orch's man page (roff) on stdout, or write one page per command.
    ///
    /// For example: `orch man > orch.1 && man ./orch.1`, or
    /// `orch man --dir /usr/local/share/man/man1` for orch(1), orch-migrate(1), orch-migrate-up(1)...
    Man {
        /// Write orch.1 and a page for every command into this directory instead.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum PlanCommand {
    /// Write plans/NAME.yaml and its migrations for a common change, from a recipe; never overwrites a file.
    ///
    /// With a database (--database-url, DATABASE_URL or PG* variables) the
    /// recipe reads the table's columns, keys, constraints, indexes, the
    /// foreign keys referencing it and the views reading it, fills in what
    /// it can, and refuses by name what it cannot do safely. Without one it
    /// works from its options and says what it could not verify. Prints the
    /// files written and the next command (`orch check`, then `orch advance
    /// NAME`). docs/recipes.md describes each recipe and its phases.
    New {
        #[command(subcommand)]
        recipe: RecipeCommand,
    },
}

/// The recipes of `orch plan new`.
#[derive(Debug, Subcommand)]
pub enum RecipeCommand {
    /// Make a column NOT NULL: CHECK (C IS NOT NULL) NOT VALID, VALIDATE, SET NOT NULL, drop the check.
    SetNotNull {
        /// The plan's name: plans/NAME.yaml (lowercase letters, digits, - and _).
        name: String,
        /// The table (name or schema.name).
        #[arg(long, value_name = "TABLE")]
        table: String,
        /// The column to make NOT NULL.
        #[arg(long, value_name = "COLUMN")]
        column: String,
        /// Fill rows where the column is NULL with this SQL expression, in a backfill phase.
        #[arg(long, value_name = "EXPR")]
        fill: Option<String>,
        #[command(flatten)]
        recent: RecentArgs,
    },
    /// Add a foreign key: NOT VALID, then VALIDATE in its own phase.
    AddForeignKey {
        /// The plan's name: plans/NAME.yaml (lowercase letters, digits, - and _).
        name: String,
        /// The referencing table (name or schema.name).
        #[arg(long, value_name = "TABLE")]
        table: String,
        /// The referencing column.
        #[arg(long, value_name = "COLUMN")]
        column: String,
        /// The referenced table and column: TABLE.COLUMN (or SCHEMA.TABLE.COLUMN).
        #[arg(long, value_name = "TABLE.COLUMN")]
        references: String,
        #[command(flatten)]
        recent: RecentArgs,
    },
    /// Add a unique constraint: CREATE UNIQUE INDEX CONCURRENTLY, then ADD CONSTRAINT ... USING INDEX.
    AddUnique {
        /// The plan's name: plans/NAME.yaml (lowercase letters, digits, - and _).
        name: String,
        /// The table (name or schema.name).
        #[arg(long, value_name = "TABLE")]
        table: String,
        /// The columns, comma-separated: C1[,C2...].
        #[arg(long, value_name = "C1[,C2]")]
        columns: String,
    },
    /// Drop a column: a gate for the app version that no longer uses it, then the guarded, irreversible drop.
    DropColumn {
        /// The plan's name: plans/NAME.yaml (lowercase letters, digits, - and _).
        name: String,
        /// The table (name or schema.name).
        #[arg(long, value_name = "TABLE")]
        table: String,
        /// The column to drop.
        #[arg(long, value_name = "COLUMN")]
        column: String,
        /// The column's type, for the down section that re-creates it (default: read from the database; required without one).
        #[arg(long = "type", value_name = "TYPE")]
        type_name: Option<String>,
        #[command(flatten)]
        recent: RecentArgs,
    },
    /// Rename a column: add NEW, a sync trigger keeps both in step, backfill, then drop the old column.
    RenameColumn {
        /// The plan's name: plans/NAME.yaml (lowercase letters, digits, - and _).
        name: String,
        /// The table (name or schema.name).
        #[arg(long, value_name = "TABLE")]
        table: String,
        /// The column to rename.
        #[arg(long, value_name = "COLUMN")]
        column: String,
        /// Its new name.
        #[arg(long, value_name = "NEW")]
        to: String,
        /// The column's type (default: read from the database; required without one).
        #[arg(long = "type", value_name = "TYPE")]
        type_name: Option<String>,
        #[command(flatten)]
        recent: RecentArgs,
    },
    /// Change a column's type: C_new kept in step by a sync trigger, backfilled, indexed concurrently, swapped in one short transaction.
    ChangeType {
        /// The plan's name: plans/NAME.yaml (lowercase letters, digits, - and _).
        name: String,
        /// The table (name or schema.name).
        #[arg(long, value_name = "TABLE")]
        table: String,
        /// The column whose type changes.
        #[arg(long, value_name = "COLUMN")]
        column: String,
        /// The new type.
        #[arg(long, value_name = "TYPE")]
        to: String,
        /// The new value as an SQL expression of the row's columns (default: C::TYPE).
        #[arg(long, value_name = "EXPR")]
        using: Option<String>,
        /// The column's type now (default: read from the database; required without one).
        #[arg(long, value_name = "TYPE")]
        from: Option<String>,
        #[command(flatten)]
        recent: RecentArgs,
    },
    /// Replace columns by one new column computed from them (lat, lng -> loc point), kept in step by a sync trigger.
    ReplaceColumns {
        /// The plan's name: plans/NAME.yaml (lowercase letters, digits, - and _).
        name: String,
        /// The table (name or schema.name).
        #[arg(long, value_name = "TABLE")]
        table: String,
        /// The columns replaced, comma-separated: C1[,C2...].
        #[arg(long, value_name = "C1,C2")]
        columns: String,
        /// The new column and its type: "NEW TYPE" (e.g. "loc point").
        #[arg(long, value_name = "NEW TYPE")]
        with: String,
        /// The new column's value as an SQL expression of the old columns.
        #[arg(long, value_name = "EXPR")]
        using: String,
        /// Each old column from the new one: C1=EXPR,C2=EXPR (keeps the old version working while the new one writes only NEW).
        #[arg(long, value_name = "C1=EXPR,C2=EXPR")]
        reverse: Option<String>,
        /// The old columns' types: C1=TYPE,C2=TYPE (default: read from the database; required without one).
        #[arg(long, value_name = "C1=TYPE,C2=TYPE")]
        old_types: Option<String>,
        #[command(flatten)]
        recent: RecentArgs,
    },
}

/// How a deploy gate's check finds the rows the new version wrote.
#[derive(Debug, Clone, Args)]
pub struct RecentArgs {
    /// The column stamped with each row's insert time, for the gate's check (default: found in the database: a timestamp defaulting to now(), else the newest rows by a serial key; required without a database).
    #[arg(long, value_name = "COLUMN")]
    pub created_at: Option<String>,
}

/// A fleet: the command on every database of a target group (orch.toml).
#[derive(Debug, Clone, Args)]
pub struct FleetArgs {
    /// Run on every database of this target group of orch.toml ([targets.NAME]) instead of one database.
    #[arg(long, value_name = "NAME")]
    pub targets: Option<String>,
    /// With --targets: work on at most N targets at once.
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = positive)]
    pub parallel: usize,
}

/// A whole number, at least 1.
fn positive(text: &str) -> Result<usize, String> {
    match number::<usize>(text)? {
        0 => Err("must be at least 1".to_string()),
        n => Ok(n),
    }
}

/// How a plan's checks and guards are run.
#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    /// Run checks and guards as this role (SET LOCAL ROLE in their read-only transaction); give it SELECT on what they read and nothing more.
    #[arg(long, env = "ORCH_CHECK_ROLE", value_name = "ROLE", value_parser = parse_role)]
    pub check_role: Option<String>,
}

/// `--check-role`: a role name, not blank.
fn parse_role(text: &str) -> Result<String, String> {
    if text.trim().is_empty() {
        return Err("a role name must not be empty".to_string());
    }
    Ok(text.to_string())
}

/// Command-line overrides of a backfill phase's settings.
#[derive(Debug, Clone, Args)]
pub struct BackfillArgs {
    /// Parallel backfill workers on disjoint key ranges (1 to 64).
    #[arg(long, value_name = "N", value_parser = |s: &str| number(s).and_then(tuning::workers))]
    pub workers: Option<u32>,
    /// Target duration of one batch (10ms to 10s).
    #[arg(long, value_name = "DURATION", value_parser = |s: &str| tuning::duration(s).and_then(tuning::batch_time))]
    pub batch_time: Option<Duration>,
    /// Pause between batches (at most 1h).
    #[arg(long = "batch-pause", value_name = "DURATION", value_parser = |s: &str| tuning::duration(s).and_then(tuning::pause))]
    pub pause: Option<Duration>,
    /// At most this many rows per second (at least 1).
    #[arg(long, value_name = "ROWS", value_parser = |s: &str| number(s).and_then(tuning::max_rows_per_second))]
    pub max_rate: Option<u64>,
    /// VACUUM the table every N batches (at least 1), auto or off.
    #[arg(long, value_name = "N|auto|off", value_parser = tuning::vacuum_arg)]
    pub vacuum_every: Option<tuning::VacuumPace>,
}

impl BackfillArgs {
    pub fn overrides(&self) -> crate::plan::BackfillOverrides {
        crate::plan::BackfillOverrides {
            workers: self.workers,
            batch_time: self.batch_time,
            pause: self.pause,
            max_rows_per_second: self.max_rate,
            vacuum_every: self.vacuum_every,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum MigrateCommand {
    /// Write migrations/<UTC timestamp>_<name>.sql with up and down sections.
    Create {
        /// Letters, digits, _ and -.
        name: String,
    },
    /// Apply pending migrations in version order, each in its own transaction.
    Up {
        /// Apply at most N migrations.
        #[arg(conflicts_with = "to")]
        count: Option<usize>,
        /// Apply up to and including this version.
        #[arg(long, value_name = "VERSION")]
        to: Option<i64>,
        /// Print the SQL that would run; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Apply pending migrations older than the newest applied one (after a branch merge).
        #[arg(long)]
        allow_out_of_order: bool,
        #[command(flatten)]
        locks: LockArgs,
        #[command(flatten)]
        fleet: FleetArgs,
    },
    /// Revert the most recent N migrations (default 1), newest first.
    Down {
        /// How many migrations to revert.
        #[arg(default_value_t = 1)]
        count: usize,
        /// Print the SQL that would run; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Run the current down section even if the file changed since it was applied.
        #[arg(long)]
        allow_changed: bool,
        #[command(flatten)]
        locks: LockArgs,
    },
    /// Revert the most recent migration and apply it again.
    Redo {
        /// Print the SQL that would run; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Run the current down section even if the file changed since it was applied.
        #[arg(long)]
        allow_changed: bool,
        #[command(flatten)]
        locks: LockArgs,
    },
    /// Every migration: applied (run, adopted, baseline or resolved), pending, changed since applied, file missing, or dirty.
    Status {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// Exit 9 when a migration is pending, changed since applied, its file is missing, or it is dirty.
        #[arg(long)]
        exit_code: bool,
        #[command(flatten)]
        fleet: FleetArgs,
    },
    /// Take over the history another tool recorded (dbmate, diesel, golang-migrate, goose, sqlx, node-pg-migrate), without running anything.
    ///
    /// Finds the tool's tracking table in the database, matches its rows to
    /// the folder's migrations by what the tool calls them, and records
    /// those orch has not as applied, in one transaction. The tool's table
    /// is left as it is. Refused, changing nothing, when the tool's history
    /// is dirty or failed, names a migration with no file, or disagrees with
    /// what orch already records; run again, it records nothing new.
    Adopt {
        /// Whose table to adopt (default: the one found): dbmate, diesel, golang-migrate, goose, sqlx or node-pg-migrate.
        #[arg(long, value_name = "TOOL", value_parser = parse_format)]
        from: Option<Format>,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Mark every migration up to and including VERSION as applied without running it (a database no tool tracked).
    ///
    /// For a database that already has those migrations' changes. Refused,
    /// changing nothing, when orch already records history beyond VERSION or
    /// only part of it, or when a plan owns one of them (its phase applies
    /// it). Run again, it marks nothing new.
    Baseline {
        /// The last migration the database already has (in the folder's apply order).
        version: i64,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Say how a dirty migration ended, once the database is fixed by hand: --applied or --rolled-back.
    ///
    /// A `transaction:false` section that fails after some of its statements
    /// ran leaves its migration dirty, and orch runs no migration until it is
    /// resolved: finish what the section did by hand and say --applied, or
    /// undo it and say --rolled-back. An applied migration whose file was
    /// removed or changed on purpose is settled with --file-removed or
    /// --accept-changed, so `up` goes on.
    #[command(group = clap::ArgGroup::new("ending").required(true).args(["applied", "rolled_back", "file_removed", "accept_changed"]))]
    Resolve {
        /// The migration's version.
        version: i64,
        /// A dirty migration: all of it is in the database now; record it as applied.
        #[arg(long)]
        applied: bool,
        /// A dirty migration: none of it is left in the database; remove its record.
        #[arg(long)]
        rolled_back: bool,
        /// An applied migration whose file was removed on purpose: keep its record, stop asking for the file.
        #[arg(long)]
        file_removed: bool,
        /// An applied migration whose file was changed on purpose (e.g. its down section): record the file as it is now.
        #[arg(long)]
        accept_changed: bool,
        #[command(flatten)]
        wait: WaitArgs,
    },
}

/// `orch demo` options.
#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Posts in the table before the plan starts.
    #[arg(long, default_value_t = 200_000)]
    pub rows: u64,
    /// Concurrent application writers.
    #[arg(long, default_value_t = 4)]
    pub writers: usize,
    /// Writes per second per writer.
    #[arg(long, default_value_t = 50)]
    pub rate: u32,
    /// Run the same change as one textbook migration instead, to see what breaks.
    #[arg(long)]
    pub naive: bool,
    /// Hold a long transaction on posts while phase 1 runs (default 3s).
    #[arg(long, value_parser = parse_duration, value_name = "DURATION", num_args = 0..=1, default_missing_value = "3s")]
    pub long_reader: Option<Duration>,
    /// Traffic time in each phase besides the work itself.
    #[arg(long, value_parser = parse_duration, default_value = "1500ms")]
    pub dwell: Duration,
    /// Backfill workers.
    #[arg(long, value_name = "N")]
    pub workers: Option<u32>,
    /// Print the final report as JSON on stdout (the narration goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// Also draw the app's write latency over time, with the phases, as SVG.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    #[command(flatten)]
    pub locks: LockArgs,
}

fn parse_format(text: &str) -> std::result::Result<Format, String> {
    Format::parse(text)
}
