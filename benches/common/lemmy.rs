//! lemmy's diesel migrations, the large real folder the benches measure
//! on: the 233 migrations published inside the `lemmy_db_schema` 0.19.21
//! crate on crates.io (the folder lemmy 0.19.21 embeds and runs), fetched
//! with cargo ([`fetch`]) and read in diesel's order ([`diesel_migrations`]).
//! Shared by `real_folder` and `lint_compare` (`#[path]`-included).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The crate whose package holds the folder, at an exact version.
pub const CRATE: &str = "lemmy_db_schema";
pub const CRATE_VERSION: &str = "0.19.21";
/// What that package holds; anything else means the download is not it.
pub const EXPECTED_MIGRATIONS: usize = 233;

/// Download the crate with cargo (checksum checked against the crates.io
/// index) and return its `migrations` folder in cargo's registry sources.
/// A scratch package under `target/bench-real-folder` depends on it at the
/// exact version; `cargo fetch` downloads it and `cargo metadata` says
/// where it was unpacked. Nothing is built.
pub fn fetch() -> Result<PathBuf, String> {
    let scratch = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-real-folder");
    std::fs::create_dir_all(&scratch).map_err(|e| format!("{}: {e}", scratch.display()))?;
    let manifest = scratch.join("Cargo.toml");
    std::fs::write(
        &manifest,
        format!(
            "# Written by benches/common/lemmy.rs to download {CRATE} {CRATE_VERSION}'s migrations.\n\
             [package]\nname = \"fetch-real-folder\"\nversion = \"0.0.0\"\nedition = \"2021\"\npublish = false\n\n\
             [lib]\npath = \"lib.rs\"\n\n\
             [dependencies]\n{CRATE} = {{ version = \"={CRATE_VERSION}\", default-features = false }}\n\n\
             [workspace]\n"
        ),
    )
    .map_err(|e| format!("{}: {e}", manifest.display()))?;
    std::fs::write(scratch.join("lib.rs"), "").map_err(|e| e.to_string())?;

    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let fetched = Command::new(&cargo)
        .arg("fetch")
        .arg("--manifest-path")
        .arg(&manifest)
        .stdout(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !fetched.status.success() {
        return Err(format!(
            "cargo fetch failed ({}): {}",
            fetched.status,
            String::from_utf8_lossy(&fetched.stderr).trim()
        ));
    }
    let metadata = Command::new(&cargo)
        .args([
            "metadata",
            "--offline",
            "--format-version",
            "1",
            "--manifest-path",
        ])
        .arg(&manifest)
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !metadata.status.success() {
        return Err(format!(
            "cargo metadata failed ({}): {}",
            metadata.status,
            String::from_utf8_lossy(&metadata.stderr).trim()
        ));
    }
    let metadata: serde_json::Value =
        serde_json::from_slice(&metadata.stdout).map_err(|e| format!("cargo metadata: {e}"))?;
    let package_manifest = metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == CRATE && p["version"] == CRATE_VERSION)
        .and_then(|p| p["manifest_path"].as_str())
        .ok_or_else(|| format!("cargo metadata does not list {CRATE} {CRATE_VERSION}"))?;
    let dir = Path::new(package_manifest)
        .parent()
        .expect("a manifest is in a folder")
        .join("migrations");
    if !dir.is_dir() {
        return Err(format!("{} is not there", dir.display()));
    }
    Ok(dir)
}

/// One diesel migration, as `diesel migration run` would run it.
pub struct DieselMigration {
    /// The folder's name, e.g. `2019-02-26-002946_create_user`.
    pub name: String,
    pub up: PathBuf,
    pub in_transaction: bool,
    pub lines: usize,
}

/// The migrations of the diesel folder `dir`, in the order diesel runs
/// them. diesel's rules (diesel_migrations 2.x, `migrations_internals`):
/// every entry that is a folder and does not start with `.` is a migration
/// and must hold `up.sql` (files beside them, like `.gitkeep`, are
/// skipped); its version is its name up to the first `_` with every `-`
/// removed, and migrations run in the string order of their versions; each
/// runs in a transaction unless its `metadata.toml` says
/// `run_in_transaction = false` (a metadata.toml that parses but does not
/// name the key means false; one that does not parse means the default,
/// true); an empty up.sql is an error.
pub fn diesel_migrations(dir: &Path) -> Result<Vec<DieselMigration>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("cannot list: {e}"))?;
    let mut migrations = Vec::new();
    let mut versions: HashMap<String, String> = HashMap::new();
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot list: {e}"))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !entry.path().is_dir() {
            continue;
        }
        let up = entry.path().join("up.sql");
        let sql = std::fs::read_to_string(&up)
            .map_err(|e| format!("{name}: not a diesel migration (no readable up.sql: {e})"))?;
        if sql.is_empty() {
            return Err(format!(
                "{name}/up.sql is empty, which diesel refuses to run"
            ));
        }
        let version = name.split('_').next().unwrap_or_default().replace('-', "");
        if let Some(other) = versions.insert(version.clone(), name.clone()) {
            return Err(format!(
                "{other} and {name} have the same version {version}"
            ));
        }
        migrations.push(DieselMigration {
            in_transaction: runs_in_transaction(&entry.path()),
            lines: sql.lines().count(),
            name,
            up,
        });
    }
    if migrations.is_empty() {
        return Err("no diesel migrations (folders holding an up.sql) here".to_string());
    }
    migrations.sort_by_cached_key(|m| {
        m.name
            .split('_')
            .next()
            .unwrap_or_default()
            .replace('-', "")
    });
    Ok(migrations)
}

/// diesel's `run_in_transaction` from the migration's `metadata.toml`
/// (only that key exists; a line parser is enough for it).
fn runs_in_transaction(migration: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(migration.join("metadata.toml")) else {
        return true;
    };
    text.lines()
        .filter_map(|line| line.split('#').next()?.split_once('='))
        .find(|(key, _)| key.trim() == "run_in_transaction")
        .is_some_and(|(_, value)| value.trim() == "true")
}
