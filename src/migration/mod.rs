//! Versioned SQL migrations: what one migration is (`file`), where
//! migrations come from (`source`, one implementation per folder format),
//! which statements need a non-transactional section (`transactional`), what
//! a migration's statements held (`held_locks`), and
//! the ordered set with its cross-migration rules (`set`).

pub mod columns;
pub mod concurrent_index;
pub mod file;
pub mod held_locks;
pub mod set;
pub mod source;
pub mod transactional;

pub use file::{Migration, Section};
pub use set::MigrationSet;
