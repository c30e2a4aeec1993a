//! Unix-domain sockets as libpq reaches them: a host that is an absolute
//! path names the directory holding the socket file `.s.PGSQL.<port>`, and
//! with no host at all libpq uses the socket directory it was built with.

use std::path::{Path, PathBuf};

/// The socket directories libpq is built with, in the order orch tries
/// them: Debian's and Ubuntu's packages (`/var/run/postgresql`), then
/// upstream's `DEFAULT_PGSOCKET_DIR` (`/tmp`, also Homebrew's and most
/// source builds').
pub const DEFAULT_SOCKET_DIRS: [&str; 2] = ["/var/run/postgresql", "/tmp"];

/// The default hosts when neither a URL, `PGHOST` nor anything else names
/// one: the directories of `DEFAULT_SOCKET_DIRS` that exist, in order (each
/// is tried in turn, like a host list); all of them when none exists, so
/// an error still names every socket that was looked for.
pub fn default_socket_dirs(exists: impl Fn(&Path) -> bool) -> Vec<&'static str> {
    let existing: Vec<&'static str> = DEFAULT_SOCKET_DIRS
        .into_iter()
        .filter(|dir| exists(Path::new(dir)))
        .collect();
    if existing.is_empty() {
        DEFAULT_SOCKET_DIRS.to_vec()
    } else {
        existing
    }
}

/// Whether `dir` is one of libpq's default socket directories (the
/// password file then matches it as `localhost`, as libpq does).
pub fn is_default_socket_dir(dir: &str) -> bool {
    DEFAULT_SOCKET_DIRS.contains(&dir.trim_end_matches('/'))
}

/// The socket file libpq opens in `dir` for `port`.
pub fn socket_path(dir: &Path, port: u16) -> PathBuf {
    dir.join(format!(".s.PGSQL.{port}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_directories_are_debian_s_then_upstream_s() {
        let cases: &[(&[&str], &[&str])] = &[
            // Both exist (a Debian machine): both are tried, Debian's first.
            (
                &["/var/run/postgresql", "/tmp"],
                &["/var/run/postgresql", "/tmp"],
            ),
            // An upstream build without Debian's directory.
            (&["/tmp"], &["/tmp"]),
            (&["/var/run/postgresql"], &["/var/run/postgresql"]),
            // Neither: both, so the error names both sockets.
            (&[], &["/var/run/postgresql", "/tmp"]),
        ];
        for (existing, expected) in cases {
            let dirs = default_socket_dirs(|dir| existing.iter().any(|e| Path::new(e) == dir));
            assert_eq!(&dirs, expected, "existing: {existing:?}");
        }
    }

    #[test]
    fn socket_files_and_default_directories() {
        assert_eq!(
            socket_path(Path::new("/var/run/postgresql"), 5432),
            Path::new("/var/run/postgresql/.s.PGSQL.5432")
        );
        assert_eq!(
            socket_path(Path::new("/tmp/x/"), 6000),
            Path::new("/tmp/x/.s.PGSQL.6000")
        );
        assert!(is_default_socket_dir("/tmp"));
        assert!(is_default_socket_dir("/var/run/postgresql/"));
        assert!(!is_default_socket_dir("/run/postgresql"));
    }
}
