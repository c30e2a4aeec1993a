//! The engine: what orch decides and in which order. It reads files through
//! `migration`/`plan`, talks to the database only through `store`, and
//! reports through `events`.

pub mod adopt;
pub mod attention;
pub mod backfill_errors;
pub mod baseline;
pub mod checks;
pub mod dirty;
pub mod fleet;
pub mod lint;
pub mod lock_retry;
pub mod migrator;
pub(crate) mod online_check;
pub(crate) mod orphans;
pub(crate) mod phases;
pub mod plan_advance;
pub mod plan_backfill;
pub mod plan_confirm;
pub mod plan_new;
pub mod plan_rollback;
pub mod plan_runner;
pub mod plan_status;
pub mod plan_sync;
pub mod resolve;
pub mod section_runner;
pub mod wait;
pub mod workspace;
pub(crate) mod written_columns;
