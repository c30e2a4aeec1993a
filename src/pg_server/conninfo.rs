//! How clients reach a throwaway server: libpq key=value strings and URLs
//! whose host is the socket directory.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::SUPERUSER;

pub(super) fn connection_string(socket_dir: &Path, port: u16, dbname: &str) -> String {
    let host = conninfo_value(&socket_dir.to_string_lossy());
    format!(
        "host={host} port={port} user={SUPERUSER} dbname={}",
        conninfo_value(dbname)
    )
}

/// Quote a libpq key=value value when it needs it.
fn conninfo_value(value: &str) -> String {
    if !value.is_empty() && !value.contains(|c: char| c.is_whitespace() || c == '\'' || c == '\\') {
        return value.to_string();
    }
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

pub(super) fn url(socket_dir: &Path, port: u16, dbname: &str) -> String {
    let host = percent_encode(socket_dir.as_os_str().as_bytes());
    format!(
        "postgresql://{SUPERUSER}@{host}:{port}/{}",
        percent_encode(dbname.as_bytes())
    )
}

fn percent_encode(bytes: &[u8]) -> String {
    let keep = |b: &u8| b.is_ascii_alphanumeric() || b"-._~".contains(b);
    bytes
        .iter()
        .map(|b| {
            if keep(b) {
                (*b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    #[test]
    fn connection_strings_and_urls_name_the_socket_dir() {
        let dir = Path::new("/tmp/orch pg'x");
        for (text, dbname) in [
            (connection_string(dir, 5432, "my db's"), "my db's"),
            (url(dir, 5432, "a/b?c"), "a/b?c"),
        ] {
            let config = tokio_postgres::Config::from_str(&text).unwrap();
            assert_eq!(
                config.get_hosts(),
                [tokio_postgres::config::Host::Unix(dir.to_path_buf())],
                "{text}"
            );
            assert_eq!(
                (config.get_ports(), config.get_user(), config.get_dbname()),
                (&[5432][..], Some("postgres"), Some(dbname))
            );
        }
        assert_eq!(
            connection_string(Path::new("/tmp/x"), 5432, "db"),
            "host=/tmp/x port=5432 user=postgres dbname=db"
        );
        assert_eq!(
            url(Path::new("/tmp/x"), 5432, "db"),
            "postgresql://postgres@%2Ftmp%2Fx:5432/db"
        );
    }
}
