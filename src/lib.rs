//! orch: zero-downtime schema changes for PostgreSQL.
//!
//! The crate has three layers: `cli` (argument parsing, printing) calls the
//! engine (`migration`, `plan`, `engine`), which calls `store` for every SQL
//! statement orch itself issues.

pub mod error;

pub use error::{Error, Result};
