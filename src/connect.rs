//! Where orch connects: `--database-url`, else `DATABASE_URL`, else libpq's
//! `PG*` variables and libpq's defaults (with no host anywhere, the socket
//! directories of `sockets::DEFAULT_SOCKET_DIRS`); a password not given
//! comes from the password file (`PGPASSFILE` or `~/.pgpass`). Also opens
//! connections (one attempt per host, each failure named) and pools.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use tokio_postgres::config::Host;
use tokio_postgres::{Client, Config};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::error::{Error, Result};

mod attempts;
mod invalid;
mod pgpass;
mod sockets;
mod tls;

pub use tls::{SslMode, TlsSettings};

/// Resolved connection settings. `describe` never shows the password.
#[derive(Clone, Debug)]
pub struct ConnectionSettings {
    config: Config,
    /// Where the settings came from, for error messages.
    source: &'static str,
    /// Something named the server or database (`--database-url`,
    /// `DATABASE_URL`, `PGHOST`, `PGHOSTADDR`, `PGPORT`, `PGDATABASE`,
    /// `PGSERVICE`), rather than libpq's defaults alone.
    configured: bool,
    tls: TlsSettings,
    connector: Connector,
}

/// The TLS connector, built once from the settings (it reads root
/// certificates).
#[derive(Clone)]
struct Connector(MakeRustlsConnect);

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Connector")
    }
}

impl ConnectionSettings {
    /// Resolve from the command-line flag and the process environment.
    pub fn resolve(flag: Option<&str>) -> Result<ConnectionSettings> {
        Self::resolve_with(flag, |name| std::env::var(name).ok())
    }

    /// Resolve with an explicit environment lookup (unit-testable).
    pub fn resolve_with(
        flag: Option<&str>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<ConnectionSettings> {
        let from_url = match flag {
            Some(url) => Some((url.to_string(), "--database-url")),
            None => env("DATABASE_URL")
                .filter(|s| !s.is_empty())
                .map(|u| (u, "DATABASE_URL")),
        };
        let (mut config, source, tls) = match from_url.clone() {
            Some((text, source)) => {
                let (text, tls) = TlsSettings::take(&text, &env)?;
                let text = match env("PGPORT").filter(|p| !p.is_empty()) {
                    Some(port) => url_with_default_port(&text, &port),
                    None => text,
                };
                let config =
                    Config::from_str(&text).map_err(|e| invalid::explain(source, &text, &e))?;
                (config, source, tls)
            }
            None => (
                Config::new(),
                "PG* environment variables and libpq defaults",
                TlsSettings::take("", &env)?.1,
            ),
        };
        fill_from_environment(&mut config, &env)?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(DEFAULT_CONNECT_TIMEOUT);
        }
        // As in libpq, TLS does not apply to unix sockets.
        let sockets_only = config
            .get_hosts()
            .iter()
            .all(|h| matches!(h, Host::Unix(_)));
        config.ssl_mode(if sockets_only {
            SslMode::Disable.driver_mode()
        } else {
            tls.mode.driver_mode()
        });
        let connector = Connector(tls.connector()?);
        let configured = from_url.is_some()
            || ["PGHOST", "PGHOSTADDR", "PGPORT", "PGDATABASE", "PGSERVICE"]
                .iter()
                .any(|name| env(name).is_some_and(|v| !v.is_empty()));
        Ok(ConnectionSettings {
            config,
            source,
            configured,
            tls,
            connector,
        })
    }

    /// Settings pointing at a given connection string (tests, demo).
    pub fn from_connection_string(text: &str) -> Result<ConnectionSettings> {
        Self::resolve_with(Some(text), |_| None)
    }

    /// The hosts, comma-separated (socket directories as paths).
    fn hosts(&self) -> String {
        let hosts: Vec<String> = self
            .config
            .get_hosts()
            .iter()
            .map(|h| match h {
                Host::Tcp(name) => name.clone(),
                Host::Unix(path) => path.display().to_string(),
            })
            .collect();
        hosts.join(",")
    }

    fn ports(&self) -> String {
        let ports: Vec<String> = self.config.get_ports().iter().map(u16::to_string).collect();
        ports.join(",")
    }

    /// `host=... port=... user=... dbname=...`, without the password.
    pub fn describe(&self) -> String {
        let mut text = format!(
            "host={} port={} user={} dbname={}",
            self.hosts(),
            self.ports(),
            self.config.get_user().unwrap_or("?"),
            self.config.get_dbname().unwrap_or("?")
        );
        if self.tls.mode != SslMode::Prefer {
            text.push_str(&format!(" sslmode={}", self.tls.mode.name()));
        }
        text
    }

    /// `host:port/dbname`, a short name for one database of a fleet
    /// (never the password).
    pub fn label(&self) -> String {
        format!("{}:{}/{}", self.hosts(), self.ports(), self.dbname())
    }

    /// The same settings pointing at another database (the harness uses
    /// this to create one database per test).
    pub fn with_dbname(&self, dbname: &str) -> ConnectionSettings {
        let mut config = self.config.clone();
        config.dbname(dbname);
        ConnectionSettings {
            config,
            source: self.source,
            configured: self.configured,
            tls: self.tls.clone(),
            connector: self.connector.clone(),
        }
    }

    /// A libpq key=value string for child processes. It includes the
    /// password, so it is for passing on, never for printing.
    pub fn to_connection_string(&self) -> String {
        fn quote(value: &str) -> String {
            format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
        }
        let mut parts = vec![
            format!("host={}", quote(&self.hosts())),
            format!("port={}", quote(&self.ports())),
        ];
        if let Some(user) = self.config.get_user() {
            parts.push(format!("user={}", quote(user)));
        }
        if let Some(password) = self.config.get_password() {
            parts.push(format!(
                "password={}",
                quote(&String::from_utf8_lossy(password))
            ));
        }
        if let Some(dbname) = self.config.get_dbname() {
            parts.push(format!("dbname={}", quote(dbname)));
        }
        parts.push(format!("sslmode={}", self.tls.mode.name()));
        if let Some(root) = &self.tls.root_cert {
            parts.push(format!("sslrootcert={}", quote(root)));
        }
        parts.join(" ")
    }

    /// Whether anything named the server or database, as opposed to
    /// libpq's defaults alone (the default sockets, the OS user's database).
    pub fn is_configured(&self) -> bool {
        self.configured
    }

    /// The database user orch connects as.
    pub fn user(&self) -> &str {
        self.config.get_user().unwrap_or_default()
    }

    pub fn dbname(&self) -> &str {
        self.config.get_dbname().unwrap_or_default()
    }

    /// The driver configuration with the given application_name.
    pub fn config(&self, application_name: &str) -> Config {
        let mut config = self.config.clone();
        config.application_name(truncate_name(application_name));
        config
    }

    /// Where a connection is attempted, in order: `socket "/tmp/.s.PGSQL.5432"`
    /// or `server at "db.example", port 5432`, comma-separated.
    pub fn targets(&self) -> String {
        let targets: Vec<String> = attempts::targets(&self.config)
            .iter()
            .map(ToString::to_string)
            .collect();
        targets.join(", ")
    }

    /// Open one connection, not pooled, driven by a background task. Hosts
    /// are tried in order, as libpq does; when all fail, the error names
    /// each one and why.
    pub async fn connect(&self, application_name: &str) -> Result<Client> {
        let config = self.config(application_name);
        let mut failures = Vec::new();
        for (targets, config) in attempts::attempts(&config) {
            // The driver's connect_timeout bounds only the socket's connect;
            // a server that accepts it and never answers would hang the
            // startup for ever, so the whole attempt gets the bound.
            let limit = config
                .get_connect_timeout()
                .copied()
                .unwrap_or(DEFAULT_CONNECT_TIMEOUT);
            let attempt = tokio::time::timeout(limit, config.connect(self.connector.0.clone()));
            let Ok(outcome) = attempt.await else {
                failures.push(attempts::Failure {
                    targets,
                    reason: format!(
                        "no answer within {} (connect_timeout)",
                        humantime::format_duration(limit)
                    ),
                    nobody_there: true,
                });
                continue;
            };
            match outcome {
                Ok((client, connection)) => {
                    tokio::spawn(async move {
                        if let Err(e) = connection.await {
                            tracing::debug!("connection closed: {e}");
                        }
                    });
                    return Ok(client);
                }
                Err(e) => failures.push(attempts::Failure::new(targets, &e)),
            }
        }
        Err(self.connect_failed(&failures))
    }

    /// A pool of connections for concurrent work (backfill workers, demo).
    pub fn pool(&self, application_name: &str, size: usize) -> Result<deadpool_postgres::Pool> {
        let manager = deadpool_postgres::Manager::from_config(
            self.config(application_name),
            self.connector.0.clone(),
            deadpool_postgres::ManagerConfig {
                recycling_method: deadpool_postgres::RecyclingMethod::Fast,
            },
        );
        deadpool_postgres::Pool::builder(manager)
            .max_size(size)
            .build()
            .map_err(|e| Error::Usage(format!("cannot build a connection pool: {e}")))
    }

    /// A connection error naming what was tried (never the password).
    pub fn connect_error(&self, err: &tokio_postgres::Error) -> Error {
        let failure = attempts::Failure::new(attempts::targets(&self.config), err);
        self.connect_failed(&[failure])
    }

    /// A connection error for an attempt that got no answer at all within
    /// `waited` (cut short by the caller, e.g. `orch wait`'s deadline).
    pub fn no_answer(&self, waited: Duration) -> Error {
        Error::Connect {
            target: format!("{}, from {}", self.describe(), self.source),
            reason: format!(
                "{}: no answer within {}",
                self.targets(),
                humantime::format_duration(Duration::from_millis(waited.as_millis() as u64))
            ),
        }
    }

    fn connect_failed(&self, failures: &[attempts::Failure]) -> Error {
        Error::Connect {
            target: format!("{}, from {}", self.describe(), self.source),
            reason: attempts::render(failures),
        }
    }
}

/// How long one connection attempt (socket, TLS, startup) may take when
/// neither `connect_timeout` nor `PGCONNECT_TIMEOUT` says: libpq waits
/// for ever; orch does not hang a deploy on a server that never answers.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// PostgreSQL truncates application_name to 63 bytes; do it on a char
/// boundary ourselves so the server never sees a broken UTF-8 sequence.
fn truncate_name(name: &str) -> &str {
    let mut end = name.len().min(63);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    &name[..end]
}

/// libpq semantics: anything the URL left unset comes from `PG*`, then from
/// libpq's compiled-in defaults.
fn fill_from_environment(config: &mut Config, env: &impl Fn(&str) -> Option<String>) -> Result<()> {
    let var = |name: &str| env(name).filter(|v| !v.is_empty());
    if config.get_ports().is_empty() {
        let port = match var("PGPORT") {
            Some(p) => p
                .parse::<u16>()
                .map_err(|_| Error::Usage(format!("PGPORT={p:?} is not a port number")))?,
            None => 5432,
        };
        config.port(port);
    }
    if config.get_hosts().is_empty() {
        match var("PGHOST") {
            Some(hosts) => {
                for host in hosts.split(',') {
                    config.host(host);
                }
            }
            None => {
                for dir in sockets::default_socket_dirs(Path::is_dir) {
                    config.host(dir);
                }
            }
        }
    }
    if config.get_user().is_none() {
        let user = var("PGUSER").unwrap_or_else(os_user_name);
        config.user(&user);
    }
    if config.get_password().is_none()
        && let Some(password) = var("PGPASSWORD")
    {
        config.password(password);
    }
    if config.get_dbname().is_none() {
        let dbname =
            var("PGDATABASE").unwrap_or_else(|| config.get_user().unwrap_or_default().to_string());
        config.dbname(&dbname);
    }
    if config.get_password().is_none()
        && let Some(file) = pgpass::path(env)
    {
        let host = match config.get_hosts().first() {
            Some(Host::Tcp(name)) => name.clone(),
            Some(Host::Unix(path)) => path.display().to_string(),
            None => String::new(),
        };
        let lookup = pgpass::Lookup {
            host: &host,
            port: config.get_ports().first().copied().unwrap_or(5432),
            dbname: config.get_dbname().unwrap_or_default(),
            user: config.get_user().unwrap_or_default(),
        };
        if let Some(password) = pgpass::password(&file, &lookup) {
            config.password(password);
        }
    }
    if config.get_connect_timeout().is_none()
        && let Some(text) = var("PGCONNECT_TIMEOUT")
    {
        let seconds: u64 = text.trim().parse().map_err(|_| {
            Error::Usage(format!(
                "PGCONNECT_TIMEOUT={text:?} is not a whole number of seconds"
            ))
        })?;
        // As libpq: 0 waits for ever (orch still bounds it, see
        // DEFAULT_CONNECT_TIMEOUT), and less than 2 seconds counts as 2.
        if seconds > 0 {
            config.connect_timeout(Duration::from_secs(seconds.max(2)));
        }
    }
    Ok(())
}

/// tokio-postgres gives a URL host without a port 5432, where libpq would
/// take `PGPORT`: write `port` into each such host before parsing. A URL
/// that names a port anywhere (a host's or `?port=`) is left alone, as is
/// a key=value string (there an unset port stays unset).
fn url_with_default_port(url: &str, port: &str) -> String {
    let Some(scheme_end) = ["postgresql://", "postgres://"]
        .iter()
        .find_map(|scheme| url.starts_with(scheme).then_some(scheme.len()))
    else {
        return url.to_string();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let hosts_start = authority.rfind('@').map_or(0, |at| at + 1);
    let (user_info, hosts) = authority.split_at(hosts_start);
    let names_port = |chunk: &str| match chunk.strip_prefix('[') {
        Some(v6) => v6.split_once(']').is_some_and(|(_, r)| r.starts_with(':')),
        None => chunk.contains(':'),
    };
    let query = tail.split_once('?').map_or("", |(_, q)| q);
    if hosts.is_empty()
        || hosts.split(',').any(names_port)
        || query.split('&').any(|kv| kv.starts_with("port="))
    {
        return url.to_string();
    }
    let hosts: Vec<String> = hosts.split(',').map(|h| format!("{h}:{port}")).collect();
    format!("{}{user_info}{}{tail}", &url[..scheme_end], hosts.join(","))
}

/// The operating-system user name, libpq's default database user.
pub fn os_user_name() -> String {
    nix::unistd::User::from_uid(nix::unistd::geteuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "postgres".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn resolve(flag: Option<&str>, vars: &[(&str, &str)]) -> ConnectionSettings {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ConnectionSettings::resolve_with(flag, |name| map.get(name).cloned()).unwrap()
    }

    #[test]
    fn flag_wins_over_database_url_and_pg_variables() {
        let s = resolve(
            Some("postgresql://alice:secret@db.example:6000/app"),
            &[
                ("DATABASE_URL", "postgresql://bob@other/x"),
                ("PGUSER", "carol"),
            ],
        );
        assert_eq!(
            s.describe(),
            "host=db.example port=6000 user=alice dbname=app"
        );
    }

    #[test]
    fn configured_when_something_names_the_server_or_database() {
        type Vars<'a> = &'a [(&'a str, &'a str)];
        let cases: &[(Option<&str>, Vars, bool)] = &[
            (Some("postgresql://db.example/app"), &[], true),
            (
                None,
                &[("DATABASE_URL", "postgresql://db.example/app")],
                true,
            ),
            (None, &[("PGHOST", "db.example")], true),
            (None, &[("PGDATABASE", "app")], true),
            (None, &[("PGPORT", "6543")], true),
            (None, &[], false),
            // Who connects, or how, names no database.
            (None, &[("PGUSER", "carol"), ("PGPASSWORD", "x")], false),
            (None, &[("DATABASE_URL", ""), ("PGHOST", "")], false),
        ];
        for (flag, vars, configured) in cases {
            assert_eq!(
                resolve(*flag, vars).is_configured(),
                *configured,
                "{flag:?} {vars:?}"
            );
        }
    }

    #[test]
    fn database_url_wins_over_pg_variables_but_they_fill_gaps() {
        let s = resolve(
            None,
            &[
                ("DATABASE_URL", "postgresql://db.example/app"),
                ("PGUSER", "carol"),
                ("PGPORT", "6543"),
            ],
        );
        assert_eq!(
            s.describe(),
            "host=db.example port=6543 user=carol dbname=app"
        );
    }

    #[test]
    fn pgport_fills_only_urls_that_name_no_port() {
        let port = |url| url_with_default_port(url, "6543");
        assert_eq!(port("postgresql://u:p@h/db"), "postgresql://u:p@h:6543/db");
        assert_eq!(port("postgres://a,b?x=1"), "postgres://a:6543,b:6543?x=1");
        assert_eq!(port("postgresql://[::1]/db"), "postgresql://[::1]:6543/db");
        for unchanged in [
            "postgresql://h:7000/db",
            "postgresql://[::1]:7000/db",
            "postgresql://a,b:7000/db",
            "postgresql://h/db?port=7000",
            "postgresql:///db",
            "host=h dbname=db",
        ] {
            assert_eq!(port(unchanged), unchanged);
        }
        let s = resolve(
            None,
            &[
                ("DATABASE_URL", "postgresql://h:7000/app"),
                ("PGPORT", "6543"),
            ],
        );
        assert!(s.describe().contains("port=7000"), "{}", s.describe());
    }

    #[test]
    fn a_missing_password_comes_from_the_password_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pgpass");
        std::fs::write(&file, "db.example:5432:app:dave:from-file\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let file = file.to_str().unwrap();
        let url = "postgresql://dave@db.example/app";
        let s = resolve(Some(url), &[("PGPASSFILE", file)]);
        assert!(s.to_connection_string().contains("password='from-file'"));
        assert!(!s.describe().contains("from-file"));
        let s = resolve(Some(url), &[("PGPASSFILE", file), ("PGPASSWORD", "env")]);
        assert!(s.to_connection_string().contains("password='env'"));
        let s = resolve(
            Some("postgresql://erin@db.example/app"),
            &[("PGPASSFILE", file)],
        );
        assert!(!s.to_connection_string().contains("password"));
    }

    #[test]
    fn pg_variables_alone() {
        let s = resolve(
            None,
            &[
                ("PGHOST", "/run/pg"),
                ("PGPORT", "5433"),
                ("PGUSER", "dave"),
                ("PGDATABASE", "shop"),
            ],
        );
        assert_eq!(s.describe(), "host=/run/pg port=5433 user=dave dbname=shop");
    }

    #[test]
    fn with_no_host_anywhere_libpq_s_socket_directories_are_tried() {
        let s = resolve(None, &[("PGUSER", "u")]);
        let expected = sockets::default_socket_dirs(Path::is_dir).join(",");
        assert_eq!(
            s.describe(),
            format!("host={expected} port=5432 user=u dbname=u")
        );
        assert!(s.targets().starts_with("socket \""), "{}", s.targets());
        // A URL without a host is the same.
        let s = resolve(Some("postgresql:///app"), &[("PGUSER", "u")]);
        assert!(s.describe().starts_with(&format!("host={expected} ")));
    }

    #[test]
    fn an_absolute_path_as_host_is_a_socket_directory() {
        for (flag, vars) in [
            (None, &[("PGHOST", "/srv/pg sockets")][..]),
            (Some("postgresql://%2Fsrv%2Fpg%20sockets/app"), &[][..]),
            (Some("postgresql:///app?host=/srv/pg%20sockets"), &[][..]),
            (
                Some("postgresql:///app"),
                &[("PGHOST", "/srv/pg sockets")][..],
            ),
            (Some("host='/srv/pg sockets' dbname=app"), &[][..]),
        ] {
            let s = resolve(flag, vars);
            assert_eq!(
                s.config.get_hosts(),
                [Host::Unix("/srv/pg sockets".into())],
                "{flag:?} {vars:?}"
            );
            assert_eq!(
                s.targets(),
                "socket \"/srv/pg sockets/.s.PGSQL.5432\"",
                "{flag:?} {vars:?}"
            );
        }
        let s = resolve(None, &[("PGHOST", "/run/a,db.example"), ("PGPORT", "6000")]);
        assert_eq!(
            s.targets(),
            "socket \"/run/a/.s.PGSQL.6000\", server at \"db.example\", port 6000"
        );
    }

    #[test]
    fn dbname_defaults_to_user() {
        let s = resolve(None, &[("PGHOST", "h"), ("PGUSER", "erin")]);
        assert_eq!(s.describe(), "host=h port=5432 user=erin dbname=erin");
    }

    #[test]
    fn key_value_strings_are_accepted() {
        let s = resolve(Some("host=/tmp/x port=5999 user=postgres dbname=t1"), &[]);
        assert_eq!(
            s.describe(),
            "host=/tmp/x port=5999 user=postgres dbname=t1"
        );
    }

    #[test]
    fn describe_never_shows_the_password() {
        let s = resolve(
            Some("postgresql://alice:hunter2@h/app"),
            &[("PGPASSWORD", "other")],
        );
        assert!(!s.describe().contains("hunter2"));
        assert!(!format!("{:?}", s.describe()).contains("other"));
    }

    #[test]
    fn connection_string_round_trips() {
        let s = resolve(Some("postgresql://al%27ice:p%5Cw@db.example:6000/app"), &[]);
        let again = ConnectionSettings::from_connection_string(&s.to_connection_string()).unwrap();
        assert_eq!(
            again.describe(),
            "host=db.example port=6000 user=al'ice dbname=app"
        );
        assert_eq!(again.config.get_password(), Some(&b"p\\w"[..]));
    }

    #[test]
    fn bad_port_is_a_usage_error() {
        let err =
            ConnectionSettings::resolve_with(None, |n| (n == "PGPORT").then(|| "abc".to_string()))
                .unwrap_err();
        assert_eq!(err.code(), 2);
        assert!(err.to_string().contains("PGPORT"));
    }
}
