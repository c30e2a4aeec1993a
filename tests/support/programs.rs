//! Programs of other tools the tests run, installed from npm when npm is
//! there, and the URL they connect with. Only std: the library's own tests
//! (`src/store/test_db.rs`) include this file too.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

/// Serialises npm installs: tests run in parallel threads.
static NPM: Mutex<()> = Mutex::new(());

/// The program `bin` of the npm package(s) `packages`, installed once into
/// the system temp dir (reused by later runs); Err says why it cannot be,
/// e.g. no npm on this machine.
pub fn npm_program(packages: &[&str], bin: &str) -> Result<PathBuf, String> {
    let _one_at_a_time = NPM.lock().unwrap_or_else(|e| e.into_inner());
    let key: String = packages
        .join("+")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let dir = std::env::temp_dir().join("orch-test-npm").join(key);
    let program = dir.join("node_modules/.bin").join(bin);
    if program.exists() {
        return Ok(program);
    }
    match Command::new("npm").arg("--version").output() {
        Ok(out) if out.status.success() => {}
        _ => return Err("npm is not installed".to_string()),
    }
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let output = Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--silent"])
        .args(packages)
        .current_dir(&dir)
        .output()
        .map_err(|e| e.to_string())?;
    if !output.status.success() || !program.exists() {
        return Err(format!(
            "npm install {} failed: {}",
            packages.join(" "),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(program)
}

/// A `postgresql://` URL for the libpq-style connection string `text`, as
/// node-postgres and Go drivers take it (a socket directory goes in
/// `?host=`).
pub fn url_of(text: &str) -> String {
    let field = |name: &str| {
        text.split(' ')
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .map(|v| v.trim_matches('\'').to_string())
            .unwrap_or_default()
    };
    let host = field("host");
    let password = field("password");
    let auth = if password.is_empty() {
        field("user")
    } else {
        format!("{}:{}", field("user"), password)
    };
    if host.starts_with('/') {
        format!(
            "postgresql://{auth}@localhost:{}/{}?host={host}&sslmode=disable",
            field("port"),
            field("dbname")
        )
    } else {
        format!(
            "postgresql://{auth}@{host}:{}/{}?sslmode=disable",
            field("port"),
            field("dbname")
        )
    }
}
