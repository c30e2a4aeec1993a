//! Migration history: what is applied, what is pending, what may run next
//! (the safety rules), and running `up` / `down` / `redo`. The planning part
//! is pure so its rules are unit-tested without a database.

use std::collections::HashMap;
use std::time::Duration;

use serde::Serialize;

use crate::engine::dirty::{dirty_record, refuse_dirty};
use crate::engine::lint as lint_gate;
use crate::engine::lock_retry::LockRetryPolicy;
use crate::engine::orphans;
use crate::engine::section_runner::{Ended, RunStats, SectionJob, SectionRunner};
use crate::error::{Error, Result};
use crate::events::{Direction, Event, Reporter};
use crate::lint::{self, Catalog, Finding, Role};
use crate::migration::file::{NOTHING_TO_UNDO, numeric_order};
use crate::migration::source::Format;
use crate::migration::transactional::check_transactional_statements;
use crate::migration::{Migration, MigrationSet, Section};
use crate::plan::{MigrationOwner, Owners};
use crate::store::Store;
use crate::store::bookkeeping::Bookkeeping;
use crate::store::locks::{self, LockScope};
use crate::store::migrations::{AppliedMigration, RecordState};
use crate::timefmt;

/// Options shared by the migration commands.
#[derive(Debug, Clone)]
pub struct MigrateOptions {
    pub policy: LockRetryPolicy,
    pub dry_run: bool,
    pub allow_out_of_order: bool,
    pub allow_changed: bool,
    /// Recorded as applied_by.
    pub actor: String,
    /// How long to wait for another orch holding the migration lock.
    pub lock_wait: Duration,
    /// Cancel statements an earlier orch process left running on the
    /// migration history instead of waiting for them.
    pub cancel_orphans: bool,
}

/// How far `up` should go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpTarget {
    All,
    Count(usize),
    /// Up to and including this version.
    To(i64),
}

/// A migration's state as `orch migrate status` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MigrationState {
    Applied,
    Pending,
    /// Applied, but the file's checksum differs from the one recorded.
    Changed,
    /// Applied, but its file is gone.
    Missing,
    /// A `transaction:false` section stopped half-way: resolve it.
    Dirty,
    /// Applied, and its file was removed on purpose (`orch migrate
    /// resolve VERSION --file-removed`).
    Retired,
}

impl MigrationState {
    pub fn label(self) -> &'static str {
        match self {
            MigrationState::Applied => "applied",
            MigrationState::Pending => "pending",
            MigrationState::Changed => "changed since applied",
            MigrationState::Missing => "applied, file missing",
            MigrationState::Dirty => "dirty",
            MigrationState::Retired => "applied, file removed",
        }
    }
}

/// One line of `orch migrate status`.
#[derive(Debug, Clone, Serialize)]
pub struct MigrationStatus {
    pub version: i64,
    pub name: String,
    pub file: Option<String>,
    pub state: MigrationState,
    pub applied: Option<AppliedMigration>,
    pub owner: Option<MigrationOwner>,
}

/// Every migration, from files and from the tracking table, by version.
pub fn status(
    set: &MigrationSet,
    applied: &[AppliedMigration],
    owners: &Owners,
) -> Vec<MigrationStatus> {
    let applied_by_version: HashMap<i64, &AppliedMigration> =
        applied.iter().map(|a| (a.version, a)).collect();
    let mut out: Vec<MigrationStatus> = set
        .files
        .iter()
        .map(|f| {
            let record = applied_by_version.get(&f.version).copied();
            let state = match record {
                None => MigrationState::Pending,
                Some(a) if a.is_dirty() => MigrationState::Dirty,
                Some(a) if a.checksum != f.checksum => MigrationState::Changed,
                Some(_) => MigrationState::Applied,
            };
            MigrationStatus {
                version: f.version,
                name: f.name.clone(),
                file: Some(f.path.display().to_string()),
                state,
                applied: record.cloned(),
                owner: owners.of(f.version, &f.name).cloned(),
            }
        })
        .collect();
    for a in applied {
        if set.by_version(a.version).is_none() {
            out.push(MigrationStatus {
                version: a.version,
                name: a.name.clone(),
                file: None,
                state: if a.is_dirty() {
                    MigrationState::Dirty
                } else if a.state == RecordState::Retired {
                    MigrationState::Retired
                } else {
                    MigrationState::Missing
                },
                applied: Some(a.clone()),
                owner: owners.of(a.version, &a.name).cloned(),
            });
        }
    }
    out.sort_by_cached_key(|s| (order_of(set, s.version), s.version));
    out
}

/// Where a version sits in the folder's apply order: its file's order key,
/// or for a version whose file is gone, the numeric one.
fn order_of(set: &MigrationSet, version: i64) -> String {
    set.by_version(version)
        .map_or_else(|| numeric_order(version), |f| f.order.clone())
}

/// What `up` will do: the files to apply, and the plan-owned migration it
/// stops before (if any).
#[derive(Debug)]
pub struct UpPlan<'a> {
    pub apply: Vec<&'a Migration>,
    pub stopped_before: Option<(&'a Migration, MigrationOwner)>,
    /// The lint's findings on `apply`, none of which blocks (warnings, and
    /// errors an `-- orch:allow` accepted).
    pub lint: Vec<Finding>,
}

/// Decide what `up` applies, enforcing the safety rules: no applied file may
/// have changed or gone missing, and pending migrations older than the newest
/// applied one need `allow_out_of_order`. Plan-owned migrations are outside
/// both rules: their plan applies them, in plan order. Last, the lint: an
/// error in what would be applied (that no `-- orch:allow` accepts) refuses
/// them all; `catalog` is what the database says of their tables.
pub fn plan_up<'a>(
    set: &'a MigrationSet,
    applied: &[AppliedMigration],
    owners: &Owners,
    target: UpTarget,
    options: &MigrateOptions,
    catalog: Catalog,
) -> Result<UpPlan<'a>> {
    refuse_dirty(applied, "apply migrations")?;
    let statuses = status(set, applied, owners);
    let mut problems = Vec::new();
    for s in &statuses {
        match s.state {
            MigrationState::Changed => problems.push(changed_message(s)),
            MigrationState::Missing => problems.push(missing_message(s)),
            _ => {}
        }
    }
    // Out of order means before the newest applied migration in the
    // folder's apply order (not necessarily by version number).
    let newest_applied = applied
        .iter()
        .filter(|a| !owners.owns(a.version, &a.name))
        .filter_map(|a| set.position(a.version).map(|p| (p, a.version)))
        .max();
    let pending: Vec<&Migration> = set
        .files
        .iter()
        .filter(|f| !applied.iter().any(|a| a.version == f.version))
        .collect();
    if !options.allow_out_of_order
        && let Some((newest_position, newest)) = newest_applied
    {
        for f in pending.iter().filter(|f| {
            set.position(f.version).is_some_and(|p| p < newest_position)
                && !owners.owns(f.version, &f.name)
        }) {
            problems.push(format!(
                    "{} is pending but comes before the newest applied migration ({newest}); this usually follows a branch merge. Check it does not depend on newer migrations, then run with --allow-out-of-order (or give it a newer version)",
                    f.path.display()
                ));
        }
    }
    if !problems.is_empty() {
        return Err(Error::refused(
            format!(
                "refusing to apply migrations:\n  - {}",
                problems.join("\n  - ")
            ),
            None,
        ));
    }
    if let UpTarget::To(version) = target
        && set.by_version(version).is_none()
    {
        return Err(Error::Usage(format!(
            "--to {version}: there is no migration with that version"
        )));
    }
    let last = match target {
        UpTarget::To(version) => set.position(version),
        _ => None,
    };
    let mut apply = Vec::new();
    let mut stopped_before = None;
    for f in pending {
        if let Some(last) = last
            && set.position(f.version).is_some_and(|p| p > last)
        {
            break;
        }
        if let UpTarget::Count(n) = target
            && apply.len() >= n
        {
            break;
        }
        if let Some(owner) = owners.of(f.version, &f.name) {
            stopped_before = Some((f, owner.clone()));
            break;
        }
        apply.push(f);
    }
    unfit_for_transactions(set.format, apply.iter().map(|f| &f.up))?;
    let empty: Vec<String> = apply.iter().filter_map(|f| empty_up(f)).collect();
    if !empty.is_empty() {
        return Err(Error::refused(
            format!(
                "refusing to apply migrations:\n  - {}",
                empty.join("\n  - ")
            ),
            None,
        ));
    }
    // Outside any plan: held to an expand phase's rules.
    let findings = lint::lint_run(set, &apply, Role::Plain, catalog);
    if let Some(refusal) = lint::refusal(&findings, "apply migrations") {
        return Err(refusal);
    }
    Ok(UpPlan {
        apply,
        stopped_before,
        lint: findings,
    })
}

/// The migrations of `set` not recorded in `applied`, in apply order.
fn pending<'a>(set: &'a MigrationSet, applied: &[AppliedMigration]) -> Vec<&'a Migration> {
    set.files
        .iter()
        .filter(|f| !applied.iter().any(|a| a.version == f.version))
        .collect()
}

/// Refuse, as invalid input naming each file:line, the sections about to
/// run that hold a statement their transaction cannot (checked only for
/// sections that run: a down section nobody runs never blocks `up`).
fn unfit_for_transactions<'a>(
    format: Format,
    sections: impl Iterator<Item = &'a Section>,
) -> Result<()> {
    let mut problems: Vec<Error> = sections
        .filter_map(|s| check_transactional_statements(s, format).err())
        .collect();
    match problems.len() {
        0 => Ok(()),
        1 => Err(problems.remove(0)),
        _ => Err(Error::Invalid(problems)),
    }
}

/// Why `migration` may not be applied: its up section holds no statement,
/// and an empty migration would only be recorded as applied.
pub fn empty_up(migration: &Migration) -> Option<String> {
    migration.up.is_empty().then(|| {
        format!(
            "{}:{}: the up section has no statement; write the migration's SQL (an empty migration would only be recorded as applied)",
            migration.up.path.display(),
            migration.up.marker_line.max(1)
        )
    })
}

fn changed_message(s: &MigrationStatus) -> String {
    let a = s.applied.as_ref().expect("changed implies applied");
    format!(
        "{} was changed after it was applied (on {} by {}); restore it as applied, and put new changes in a new migration (`orch migrate create NAME`). If the change is on purpose and changes nothing already applied (e.g. only its down section was fixed), accept it: `orch migrate resolve {} --accept-changed`",
        s.file.as_deref().unwrap_or("?"),
        timefmt::utc(&a.applied_at),
        a.applied_by,
        s.version
    )
}

fn missing_message(s: &MigrationStatus) -> String {
    let a = s.applied.as_ref().expect("missing implies applied");
    format!(
        "migration {}_{} is applied (on {} by {}) but its file is missing from the migrations directory; restore it, or, if it was removed on purpose (e.g. old migrations squashed), say so: `orch migrate resolve {} --file-removed` (its record is kept)",
        s.version,
        s.name,
        timefmt::utc(&a.applied_at),
        a.applied_by,
        s.version
    )
}

/// Decide what `down N` reverts: the N newest applied, newest first, each of
/// which must have its file unchanged, a non-empty down section, and no plan
/// owning it. Everything is checked before anything runs.
pub fn plan_down<'a>(
    set: &'a MigrationSet,
    applied: &[AppliedMigration],
    owners: &Owners,
    count: usize,
    options: &MigrateOptions,
) -> Result<Vec<&'a Migration>> {
    refuse_dirty(applied, "revert migrations")?;
    let mut newest_first: Vec<&AppliedMigration> = applied.iter().collect();
    newest_first.sort_by_cached_key(|a| std::cmp::Reverse((order_of(set, a.version), a.version)));
    let mut revert = Vec::new();
    let mut problems = Vec::new();
    for a in newest_first.into_iter().take(count) {
        let id = format!("{}_{}", a.version, a.name);
        // One a plan applied is undone by the plan; one applied outside its
        // plan (before the plan existed) may be reverted here, so the plan
        // can apply it.
        if let Some(owner) = owners.of(a.version, &a.name)
            && a.plan.is_some()
        {
            problems.push(format!(
                "{id} belongs to plan {}, phase {} ({}); undo it with `orch rollback {}`",
                owner.plan, owner.position, owner.phase, owner.plan
            ));
            continue;
        }
        let Some(file) = set.by_version(a.version) else {
            problems.push(format!("{id} is applied but its file is missing, so there is no down section to run; restore the file"));
            continue;
        };
        if file.checksum != a.checksum && !options.allow_changed {
            problems.push(format!(
                "{} was changed after it was applied; its down section may not match what was applied. Restore it, or pass --allow-changed to run the current down section",
                file.path.display()
            ));
            continue;
        }
        match &file.down {
            Some(down) if !down.is_empty() || down.says_nothing_to_undo() => revert.push(file),
            _ => problems.push(format!(
                "{} has no down section (or an empty one), so it cannot be reverted; {} first (or, when there is truly nothing to undo, a down section holding only the comment \"-- {NOTHING_TO_UNDO}\")",
                file.path.display(),
                set.format.down_hint()
            )),
        }
    }
    if !problems.is_empty() {
        return Err(Error::refused(
            format!("refusing to revert:\n  - {}", problems.join("\n  - ")),
            None,
        ));
    }
    unfit_for_transactions(set.format, revert.iter().filter_map(|f| f.down.as_ref()))?;
    Ok(revert)
}

/// Runs migration commands against one database.
pub struct Migrator<'a> {
    pub store: &'a Store,
    pub set: &'a MigrationSet,
    pub owners: &'a Owners,
    pub options: &'a MigrateOptions,
    pub reporter: &'a dyn Reporter,
}

/// What `up` did.
#[derive(Debug, Default)]
pub struct UpOutcome {
    pub applied: Vec<String>,
    pub stopped_before: Option<(String, MigrationOwner)>,
}

impl Migrator<'_> {
    /// Run `work` holding the migration lock (not in a dry run), released
    /// before returning; an older orch's schema is brought up to date first
    /// (what `work` records may need its newer columns).
    pub(crate) async fn locked<T>(
        &self,
        work: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        if self.options.dry_run {
            return work.await;
        }
        self.lock()
            .await?
            .around(async {
                self.store.upgrade_schema().await?;
                work.await
            })
            .await
    }

    /// The migration lock; then what an earlier process left running on
    /// the migration history is waited for (or cancelled).
    async fn lock(&self) -> Result<locks::LockGuard> {
        let wait = self.options.lock_wait;
        let guard = self.store.lock("lock", LockScope::Migrations, wait).await?;
        orphans::settle(
            self.store,
            &LockScope::Migrations,
            wait,
            self.options.cancel_orphans,
            self.reporter,
        )
        .await?;
        Ok(guard)
    }

    /// `orch migrate up`.
    pub async fn up(&self, target: UpTarget) -> Result<UpOutcome> {
        self.locked(self.up_locked(target)).await
    }

    async fn up_locked(&self, target: UpTarget) -> Result<UpOutcome> {
        let applied = self.store.applied_migrations().await?;
        let catalog = lint_gate::catalog(self.store, &pending(self.set, &applied)).await?;
        let plan = plan_up(
            self.set,
            &applied,
            self.owners,
            target,
            self.options,
            catalog,
        )?;
        lint_gate::report(self.reporter, &plan.lint);
        let mut outcome = UpOutcome {
            applied: Vec::new(),
            stopped_before: plan
                .stopped_before
                .as_ref()
                .map(|(f, owner)| (f.id(), owner.clone())),
        };
        if plan.apply.is_empty() {
            let message = if outcome.stopped_before.is_some() {
                "nothing to apply before the next plan-owned migration"
            } else {
                "nothing to apply: every migration is applied"
            };
            self.reporter.report(Event::Info {
                message: message.to_string(),
            });
        }
        if !self.options.dry_run && !plan.apply.is_empty() {
            self.store.ensure_schema().await?;
        }
        let runner = if self.options.dry_run {
            None
        } else {
            Some(SectionRunner::new(self.store, &self.options.policy, self.reporter).await?)
        };
        for file in plan.apply {
            let allowed = lint_gate::of(&plan.lint, &file.up);
            self.apply(runner.as_ref(), file, Direction::Up, None, &allowed)
                .await?;
            outcome.applied.push(file.id());
        }
        if let Some((id, owner)) = &outcome.stopped_before {
            self.reporter.report(Event::Info {
                message: format!(
                    "stopped before {id}: it belongs to plan {}, phase {} ({}); it is applied by `orch advance {}`",
                    owner.plan, owner.position, owner.phase, owner.plan
                ),
            });
        }
        Ok(outcome)
    }

    /// `orch migrate down N`; returns the reverted ids, newest first.
    pub async fn down(&self, count: usize) -> Result<Vec<String>> {
        self.locked(self.down_locked(count)).await
    }

    async fn down_locked(&self, count: usize) -> Result<Vec<String>> {
        let applied = self.store.applied_migrations().await?;
        let revert = plan_down(self.set, &applied, self.owners, count, self.options)?;
        if revert.is_empty() {
            self.reporter.report(Event::Info {
                message: "nothing to revert: no migration is applied".to_string(),
            });
            return Ok(Vec::new());
        }
        let findings = self
            .lint_revert(&revert, false, "revert migrations")
            .await?;
        let runner = if self.options.dry_run {
            None
        } else {
            Some(SectionRunner::new(self.store, &self.options.policy, self.reporter).await?)
        };
        let mut done = Vec::new();
        for file in revert {
            let allowed = file
                .down
                .as_ref()
                .map(|d| lint_gate::of(&findings, d))
                .unwrap_or_default();
            self.apply(runner.as_ref(), file, Direction::Down, None, &allowed)
                .await?;
            done.push(file.id());
        }
        Ok(done)
    }

    /// `orch migrate redo`: down 1, then up the same migration, under one lock.
    pub async fn redo(&self) -> Result<Option<String>> {
        self.locked(self.redo_locked()).await
    }

    async fn redo_locked(&self) -> Result<Option<String>> {
        let applied = self.store.applied_migrations().await?;
        let revert = plan_down(self.set, &applied, self.owners, 1, self.options)?;
        let Some(file) = revert.first().copied() else {
            self.reporter.report(Event::Info {
                message: "nothing to redo: no migration is applied".to_string(),
            });
            return Ok(None);
        };
        let findings = self
            .lint_revert(&revert, true, "redo the migration")
            .await?;
        let runner = if self.options.dry_run {
            None
        } else {
            Some(SectionRunner::new(self.store, &self.options.policy, self.reporter).await?)
        };
        let down = file
            .down
            .as_ref()
            .expect("plan_down checked the down section");
        // Each section's own findings (a file holding both is told apart by
        // the sections' lines).
        self.apply(
            runner.as_ref(),
            file,
            Direction::Down,
            None,
            &lint_gate::of(&findings, down),
        )
        .await?;
        self.apply(
            runner.as_ref(),
            file,
            Direction::Up,
            None,
            &lint_gate::of(&findings, &file.up),
        )
        .await?;
        Ok(Some(file.id()))
    }

    /// The lint of the down sections about to run (and, for `redo`, the up
    /// section after them): an error nobody allowed refuses before
    /// anything runs; the rest is reported.
    async fn lint_revert(
        &self,
        revert: &[&Migration],
        reapply: bool,
        doing: &str,
    ) -> Result<Vec<Finding>> {
        let catalog = lint_gate::revert_catalog(self.store, revert).await?;
        let findings = lint::lint_revert(self.set, revert, reapply, catalog);
        if let Some(refusal) = lint::refusal(&findings, doing) {
            return Err(refusal);
        }
        lint_gate::report(self.reporter, &findings);
        Ok(findings)
    }

    /// Apply one section (or describe it, in a dry run) and record it in the
    /// same transaction, with the lint findings `allowed` accepted in it.
    /// `owner` marks a plan's phase as the applier.
    pub async fn apply(
        &self,
        runner: Option<&SectionRunner<'_>>,
        file: &Migration,
        direction: Direction,
        owner: Option<&MigrationOwner>,
        allowed: &[&Finding],
    ) -> Result<Option<RunStats>> {
        let section = match direction {
            Direction::Up => &file.up,
            Direction::Down => file
                .down
                .as_ref()
                .expect("plan_down checked the down section"),
        };
        let id = file.id();
        let Some(runner) = runner else {
            self.reporter.report(Event::MigrationWouldRun {
                id,
                direction,
                transactional: section.transactional,
                sql: section.sql.trim().to_string(),
            });
            return Ok(None);
        };
        self.reporter.report(Event::MigrationStarted {
            id: id.clone(),
            direction,
        });
        let job = SectionJob {
            version: file.version,
            id: &id,
            path: &section.path,
            section,
            direction,
            recheck: &[],
            before: None,
            after: None,
            place: None,
        };
        let actor = self.options.actor.clone();
        let stats = runner
            .run(&job, |ended| match ended {
                Ended::Done(stats) => {
                    let mut records = vec![record(file, direction, &actor, stats, owner)];
                    records.extend(lint_gate::allowed_records(
                        allowed,
                        file,
                        &actor,
                        owner.map(|o| (o.plan.as_str(), o.phase.as_str())),
                    ));
                    records
                }
                Ended::HalfDone(dirty) => vec![dirty_record(file, &actor, dirty, owner)],
            })
            .await?;
        self.reporter.report(Event::MigrationDone {
            id,
            direction,
            duration_ms: stats.duration.as_millis() as u64,
            attempts: stats.attempts,
        });
        Ok(Some(stats))
    }
}

/// The bookkeeping row for one applied (or reverted) migration.
pub fn record(
    file: &Migration,
    direction: Direction,
    actor: &str,
    stats: &RunStats,
    owner: Option<&MigrationOwner>,
) -> Bookkeeping {
    match direction {
        Direction::Up => Bookkeeping::MigrationApplied {
            version: file.version,
            name: file.name.clone(),
            checksum: file.checksum.clone(),
            applied_by: actor.to_string(),
            duration_ms: stats.duration.as_millis() as i64,
            execution_ms: stats.execution.as_millis() as i64,
            attempts: stats.attempts as i32,
            plan: owner.map(|o| o.plan.clone()),
            phase: owner.map(|o| o.phase.clone()),
            locks: stats.locks.clone(),
        },
        Direction::Down => Bookkeeping::MigrationReverted {
            version: file.version,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::migrations::{DirtyState, Origin, RecordState};
    use std::path::Path;

    fn file(version: i64, name: &str, body: &str) -> Migration {
        crate::migration::source::dbmate::parse_file(
            Path::new(&format!("migrations/{version}_{name}.sql")),
            &format!("-- migrate:up\n{body}\n-- migrate:down\nSELECT 'down';\n"),
        )
        .unwrap()
    }

    fn set(files: Vec<Migration>) -> MigrationSet {
        MigrationSet {
            dir: "migrations".into(),
            files,
            ..MigrationSet::default()
        }
    }

    fn applied(f: &Migration) -> AppliedMigration {
        AppliedMigration {
            version: f.version,
            name: f.name.clone(),
            checksum: f.checksum.clone(),
            applied_at: chrono::Utc::now(),
            applied_by: "tester".into(),
            duration_ms: 1,
            execution_ms: 1,
            attempts: 1,
            plan: None,
            phase: None,
            state: RecordState::Applied,
            origin: Origin::Ran,
            dirty: None,
            locks: None,
        }
    }

    fn options() -> MigrateOptions {
        MigrateOptions {
            policy: LockRetryPolicy::default(),
            dry_run: false,
            allow_out_of_order: false,
            allow_changed: false,
            actor: "tester".into(),
            lock_wait: Duration::from_secs(1),
            cancel_orphans: false,
        }
    }

    fn names(files: &[&Migration]) -> Vec<String> {
        files.iter().map(|f| f.name.clone()).collect()
    }

    #[test]
    fn up_targets() {
        let s = set(vec![
            file(1, "a", "SELECT 1;"),
            file(2, "b", "SELECT 2;"),
            file(3, "c", "SELECT 3;"),
        ]);
        let done = vec![applied(&s.files[0])];
        let owners = Owners::new();
        let cases = [
            (UpTarget::All, vec!["b", "c"]),
            (UpTarget::Count(1), vec!["b"]),
            (UpTarget::To(2), vec!["b"]),
            (UpTarget::To(1), vec![]),
        ];
        for (target, expected) in cases {
            let plan = plan_up(&s, &done, &owners, target, &options(), Catalog::default()).unwrap();
            assert_eq!(names(&plan.apply), expected, "{target:?}");
        }
        let err = plan_up(
            &s,
            &done,
            &owners,
            UpTarget::To(7),
            &options(),
            Catalog::default(),
        )
        .unwrap_err();
        assert_eq!(err.code(), 2);
    }

    #[test]
    fn changed_and_missing_files_refuse_up_naming_each_file() {
        let original = file(1, "a", "SELECT 1;");
        let s = set(vec![
            file(1, "a", "SELECT 'edited';"),
            file(3, "c", "SELECT 3;"),
        ]);
        let mut gone = applied(&file(2, "b", "SELECT 2;"));
        gone.version = 2;
        let err = plan_up(
            &s,
            &[applied(&original), gone],
            &Owners::new(),
            UpTarget::All,
            &options(),
            Catalog::default(),
        )
        .unwrap_err();
        assert_eq!(err.code(), 4);
        let text = err.to_string();
        assert!(
            text.contains("migrations/1_a.sql was changed after it was applied"),
            "{text}"
        );
        assert!(text.contains("migration 2_b is applied"), "{text}");
        assert!(text.contains("file is missing"), "{text}");
    }

    #[test]
    fn out_of_order_needs_the_flag() {
        let s = set(vec![
            file(1, "a", "SELECT 1;"),
            file(2, "b", "SELECT 2;"),
            file(3, "c", "SELECT 3;"),
        ]);
        let done = vec![applied(&s.files[0]), applied(&s.files[2])];
        let err = plan_up(
            &s,
            &done,
            &Owners::new(),
            UpTarget::All,
            &options(),
            Catalog::default(),
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("migrations/2_b.sql is pending but comes before"),
            "{err}"
        );
        let allowed = MigrateOptions {
            allow_out_of_order: true,
            ..options()
        };
        let plan = plan_up(
            &s,
            &done,
            &Owners::new(),
            UpTarget::All,
            &allowed,
            Catalog::default(),
        )
        .unwrap();
        assert_eq!(names(&plan.apply), ["b"]);
    }

    #[test]
    fn up_stops_before_a_plan_owned_migration() {
        let s = set(vec![
            file(1, "a", "SELECT 1;"),
            file(2, "b", "SELECT 2;"),
            file(3, "c", "SELECT 3;"),
        ]);
        let mut owners = Owners::new();
        owners.insert(
            "b",
            MigrationOwner {
                plan: "p".into(),
                position: 1,
                phase: "add-b".into(),
            },
        );
        let plan = plan_up(
            &s,
            &[],
            &owners,
            UpTarget::All,
            &options(),
            Catalog::default(),
        )
        .unwrap();
        assert_eq!(names(&plan.apply), ["a"]);
        assert_eq!(plan.stopped_before.unwrap().0.name, "b");
    }

    #[test]
    fn plan_owned_migrations_do_not_count_as_out_of_order() {
        let s = set(vec![
            file(1, "a", "SELECT 1;"),
            file(2, "b", "SELECT 2;"),
            file(3, "c", "SELECT 3;"),
        ]);
        let mut owners = Owners::new();
        owners.insert(
            "c",
            MigrationOwner {
                plan: "p".into(),
                position: 1,
                phase: "x".into(),
            },
        );
        let mut by_plan = applied(&s.files[2]);
        by_plan.plan = Some("p".into());
        let plan = plan_up(
            &s,
            &[applied(&s.files[0]), by_plan],
            &owners,
            UpTarget::All,
            &options(),
            Catalog::default(),
        )
        .unwrap();
        assert_eq!(names(&plan.apply), ["b"]);
    }

    #[test]
    fn down_reverts_newest_first_and_refuses_what_it_cannot_undo() {
        let no_down = crate::migration::source::dbmate::parse_file(
            Path::new("migrations/4_d.sql"),
            "-- migrate:up\nSELECT 4;\n",
        )
        .unwrap();
        let s = set(vec![
            file(1, "a", "SELECT 1;"),
            file(2, "b", "SELECT 2;"),
            no_down,
        ]);
        let two = vec![applied(&s.files[0]), applied(&s.files[1])];
        let got = plan_down(&s, &two, &Owners::new(), 2, &options()).unwrap();
        assert_eq!(names(&got), ["b", "a"]);
        let with_d = vec![applied(&s.files[0]), applied(&s.files[2])];
        let err = plan_down(&s, &with_d, &Owners::new(), 1, &options()).unwrap_err();
        assert!(
            err.to_string().contains("4_d.sql has no down section"),
            "{err}"
        );
        assert!(
            plan_down(&s, &[], &Owners::new(), 1, &options())
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn status_reports_every_state() {
        let s = set(vec![
            file(1, "a", "SELECT 1;"),
            file(2, "b", "SELECT 'new';"),
            file(3, "c", "SELECT 3;"),
        ]);
        let mut changed = applied(&s.files[1]);
        changed.checksum = "old".into();
        let mut missing = applied(&s.files[0]);
        missing.version = 9;
        missing.name = "gone".into();
        let got = status(
            &s,
            &[applied(&s.files[0]), changed, missing],
            &Owners::new(),
        );
        let states: Vec<MigrationState> = got.iter().map(|s| s.state).collect();
        assert_eq!(
            states,
            [
                MigrationState::Applied,
                MigrationState::Changed,
                MigrationState::Pending,
                MigrationState::Missing
            ]
        );
    }

    fn dirty(f: &Migration) -> AppliedMigration {
        AppliedMigration {
            state: RecordState::Dirty,
            dirty: Some(DirtyState {
                direction: "up".into(),
                file: f.path.display().to_string(),
                line: 5,
                statement: 2,
                statements: 3,
                completed: 1,
                error: "relation \"nope\" does not exist (SQLSTATE 42P01)".into(),
                sqlstate: Some("42P01".into()),
            }),
            ..applied(f)
        }
    }

    #[test]
    fn a_dirty_migration_shows_and_stops_up_and_down_naming_the_statement_and_the_fix() {
        let s = set(vec![file(1, "a", "SELECT 1;"), file(2, "b", "SELECT 2;")]);
        let rows = [applied(&s.files[0]), dirty(&s.files[1])];
        let got = status(&s, &rows, &Owners::new());
        assert_eq!(got[1].state, MigrationState::Dirty);
        assert_eq!(got[1].state.label(), "dirty");
        for err in [
            plan_up(
                &s,
                &rows,
                &Owners::new(),
                UpTarget::All,
                &options(),
                Catalog::default(),
            )
            .unwrap_err(),
            plan_down(&s, &rows, &Owners::new(), 1, &options()).unwrap_err(),
        ] {
            assert_eq!(err.code(), 4);
            let text = err.to_string();
            for expected in [
                "migration 2_b is dirty",
                "stopped half-way at migrations/2_b.sql:5 (statement 2 of 3; the 1 before it ran and stay applied): relation \"nope\" does not exist",
                "orch migrate resolve 2 --applied",
                "orch migrate resolve 2 --rolled-back",
            ] {
                assert!(text.contains(expected), "{expected:?} not in {text}");
            }
        }
        // A dirty migration whose file is gone is still dirty, not missing.
        let gone = dirty(&file(3, "c", "SELECT 3;"));
        let got = status(&s, &[gone], &Owners::new());
        assert_eq!(got[2].state, MigrationState::Dirty);
    }
}
