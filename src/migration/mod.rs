//! Versioned SQL migration files: parsing (`file`), and the ordered set found
//! in a directory (`set`).

pub mod file;
pub mod set;

pub use file::{MigrationFile, Section};
pub use set::MigrationSet;
