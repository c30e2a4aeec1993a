//! libpq's password file: `PGPASSFILE`, else `~/.pgpass`, lines of
//! `hostname:port:database:username:password` where `*` matches anything
//! and `\:` / `\\` escape. Like libpq, a file that group or others can read
//! is ignored (with a warning), and the first matching line wins.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// What one connection attempt is looked up by.
pub struct Lookup<'a> {
    pub host: &'a str,
    pub port: u16,
    pub dbname: &'a str,
    pub user: &'a str,
}

/// The password file's path from `PGPASSFILE` or `HOME`.
pub fn path(env: &impl Fn(&str) -> Option<String>) -> Option<PathBuf> {
    match env("PGPASSFILE").filter(|v| !v.is_empty()) {
        Some(file) => Some(PathBuf::from(file)),
        None => env("HOME")
            .filter(|v| !v.is_empty())
            .map(|home| Path::new(&home).join(".pgpass")),
    }
}

/// The password for `lookup` from the file at `path`, if the file exists,
/// is private to its owner, and has a matching line.
pub fn password(path: &Path, lookup: &Lookup<'_>) -> Option<String> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_file() {
        return None;
    }
    if meta.permissions().mode() & 0o077 != 0 {
        tracing::warn!(
            "password file {} has group or world access; permissions should be u=rw (0600) or less; ignoring it",
            path.display()
        );
        return None;
    }
    let text = std::fs::read_to_string(path).ok()?;
    find(&text, lookup)
}

/// The first line of `text` that matches `lookup`.
pub fn find(text: &str, lookup: &Lookup<'_>) -> Option<String> {
    // A connection through libpq's default socket directory matches the
    // host `localhost`, as in libpq.
    let host = if lookup.host.is_empty() || super::sockets::is_default_socket_dir(lookup.host) {
        "localhost"
    } else {
        lookup.host
    };
    let port = lookup.port.to_string();
    let wanted = [host, port.as_str(), lookup.dbname, lookup.user];
    text.lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .filter_map(fields)
        .find(|fields| {
            wanted
                .iter()
                .zip(fields)
                .all(|(want, field)| field == "*" || field == want)
        })
        .map(|mut fields| fields.pop().unwrap_or_default())
}

/// The five fields of a line, unescaped; `None` for a line with fewer.
fn fields(line: &str) -> Option<Vec<String>> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => fields.last_mut()?.extend(chars.next()),
            ':' if fields.len() < 5 => fields.push(String::new()),
            c => fields.last_mut()?.push(c),
        }
    }
    (fields.len() == 5).then_some(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "\
# comment
db.example:5432:app:alice:first
db.example:*:*:alice:second
*:*:*:bob:pa\\:ss\\\\word
localhost:5432:*:carol:local
short:line
";

    fn lookup<'a>(host: &'a str, port: u16, dbname: &'a str, user: &'a str) -> Option<String> {
        let l = Lookup {
            host,
            port,
            dbname,
            user,
        };
        find(FILE, &l)
    }

    #[test]
    fn first_matching_line_wins_and_wildcards_match() {
        assert_eq!(
            lookup("db.example", 5432, "app", "alice").as_deref(),
            Some("first")
        );
        assert_eq!(
            lookup("db.example", 6000, "x", "alice").as_deref(),
            Some("second")
        );
        assert_eq!(lookup("other", 5432, "app", "alice"), None);
    }

    #[test]
    fn escapes_are_undone() {
        assert_eq!(lookup("h", 1, "d", "bob").as_deref(), Some("pa:ss\\word"));
    }

    #[test]
    fn the_default_socket_directory_is_localhost() {
        let local = Some("local".to_string());
        assert_eq!(lookup("/var/run/postgresql", 5432, "d", "carol"), local);
        assert_eq!(lookup("localhost", 5432, "d", "carol"), local);
        assert_eq!(lookup("/tmp/elsewhere", 5432, "d", "carol"), None);
    }

    #[test]
    fn a_file_others_can_read_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pgpass");
        std::fs::write(&file, FILE).unwrap();
        let l = Lookup {
            host: "db.example",
            port: 5432,
            dbname: "app",
            user: "alice",
        };
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(password(&file, &l), None);
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(password(&file, &l).as_deref(), Some("first"));
        assert_eq!(password(&dir.path().join("missing"), &l), None);
    }
}
