//! Expand/contract plans: the YAML format (`format`), loading with precise
//! errors (`load`), semantic rules (`validate`) and the phase state machine
//! (`state`).

pub mod audit;
pub mod format;
pub(crate) mod kinds;
pub mod load;
pub mod ownership;
pub mod records;
pub mod set;
pub mod state;
pub mod suggest;
pub mod tuning;
pub mod validate;
pub(crate) mod validator;

pub use audit::AuditAction;
pub use format::{
    BackfillOverrides, BackfillSpec, CheckSpec, PhaseKind, PlanSpec, VacuumEvery, WalkKind,
};
pub use load::LoadedPlan;
pub use ownership::{MigrationOwner, Owners};
pub use set::PlanSet;
pub use state::PhaseState;
