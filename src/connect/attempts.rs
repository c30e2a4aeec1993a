//! One connection attempt per host, in order, as libpq makes them, so a
//! failure can say what each attempt tried (`socket "/tmp/.s.PGSQL.5432"`,
//! `server at "db.example", port 5432`), why it failed, and, when nothing
//! answered there, psql's question about whether the server is running.

use std::fmt;
use std::io;
use std::path::PathBuf;

use tokio_postgres::Config;
use tokio_postgres::config::{Host, LoadBalanceHosts};

use super::sockets::socket_path;

/// Where one attempt connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A Unix-domain socket file (its directory is the host).
    Socket(PathBuf),
    /// A TCP host name or address and port.
    Server { host: String, port: u16 },
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Socket(path) => write!(f, "socket \"{}\"", path.display()),
            Target::Server { host, port } => write!(f, "server at \"{host}\", port {port}"),
        }
    }
}

/// The attempts a configuration makes: one per host, each with its own
/// configuration. Hosts the driver would shuffle (`load_balance_hosts=random`)
/// stay one attempt, as does a configuration without hosts.
pub fn attempts(config: &Config) -> Vec<(Vec<Target>, Config)> {
    let hosts = config.get_hosts();
    if hosts.len() <= 1 || config.get_load_balance_hosts() == LoadBalanceHosts::Random {
        return vec![(targets(config), config.clone())];
    }
    (0..hosts.len())
        .map(|i| {
            let one = only_host(config, i);
            (targets(&one), one)
        })
        .collect()
}

/// Every host of `config` with its port, in order.
pub fn targets(config: &Config) -> Vec<Target> {
    config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let port = port_of(config, i);
            match host {
                Host::Tcp(name) => Target::Server {
                    host: name.clone(),
                    port,
                },
                Host::Unix(dir) => Target::Socket(socket_path(dir, port)),
            }
        })
        .collect()
}

/// As the driver pairs them: the i-th port, else the only one, else 5432.
fn port_of(config: &Config, i: usize) -> u16 {
    let ports = config.get_ports();
    ports.get(i).or(ports.first()).copied().unwrap_or(5432)
}

/// `config` with only its `i`-th host (and hostaddr and port); every other
/// setting is kept (a unit test checks this against a parsed one-host URL).
fn only_host(config: &Config, i: usize) -> Config {
    let mut one = Config::new();
    if let Some(user) = config.get_user() {
        one.user(user);
    }
    if let Some(password) = config.get_password() {
        one.password(password);
    }
    if let Some(dbname) = config.get_dbname() {
        one.dbname(dbname);
    }
    if let Some(options) = config.get_options() {
        one.options(options);
    }
    if let Some(name) = config.get_application_name() {
        one.application_name(name);
    }
    one.ssl_mode(config.get_ssl_mode());
    one.ssl_negotiation(config.get_ssl_negotiation());
    match &config.get_hosts()[i] {
        Host::Tcp(name) => one.host(name),
        Host::Unix(dir) => one.host_path(dir),
    };
    if let Some(addr) = config.get_hostaddrs().get(i) {
        one.hostaddr(*addr);
    }
    one.port(port_of(config, i));
    if let Some(timeout) = config.get_connect_timeout() {
        one.connect_timeout(*timeout);
    }
    if let Some(timeout) = config.get_tcp_user_timeout() {
        one.tcp_user_timeout(*timeout);
    }
    one.keepalives(config.get_keepalives());
    one.keepalives_idle(config.get_keepalives_idle());
    if let Some(interval) = config.get_keepalives_interval() {
        one.keepalives_interval(interval);
    }
    if let Some(retries) = config.get_keepalives_retries() {
        one.keepalives_retries(retries);
    }
    one.target_session_attrs(config.get_target_session_attrs());
    one.channel_binding(config.get_channel_binding());
    one.load_balance_hosts(config.get_load_balance_hosts());
    one
}

/// One failed attempt.
#[derive(Debug, Clone)]
pub struct Failure {
    pub targets: Vec<Target>,
    pub reason: String,
    /// Nothing answered (no socket file, connection refused, timed out):
    /// worth asking whether the server runs there.
    pub nobody_there: bool,
}

impl Failure {
    pub fn new(targets: Vec<Target>, err: &tokio_postgres::Error) -> Failure {
        // The driver says "error connecting to server" around the OS error;
        // the message already says orch cannot connect, so show the OS error.
        let io_error = std::error::Error::source(err)
            .and_then(|cause| cause.downcast_ref::<io::Error>())
            .filter(|_| err.to_string() == "error connecting to server");
        match io_error {
            Some(io) => Failure {
                targets,
                reason: match io.kind() {
                    io::ErrorKind::NotADirectory => format!(
                        "{io} (a socket host names the socket's directory, not the socket file)"
                    ),
                    _ => io.to_string(),
                },
                nobody_there: matches!(
                    io.kind(),
                    io::ErrorKind::NotFound
                        | io::ErrorKind::ConnectionRefused
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::HostUnreachable
                        | io::ErrorKind::NetworkUnreachable
                        | io::ErrorKind::AddrNotAvailable
                ),
            },
            None if answered_without_postgres_protocol(err) => Failure {
                reason: format!(
                    "what answered on {} is not PostgreSQL: its reply is not PostgreSQL's protocol ({}); is the host or port wrong?",
                    match targets.as_slice() {
                        [_] => "that host and port",
                        _ => "those hosts and ports",
                    },
                    cause_chain(err)
                ),
                targets,
                nobody_there: false,
            },
            None => Failure {
                targets,
                reason: cause_chain(err),
                nobody_there: false,
            },
        }
    }

    /// `socket "/tmp/.s.PGSQL.5432": No such file or directory (os error 2);
    /// is the server running locally and accepting connections on that socket?`
    pub fn render(&self) -> String {
        let targets: Vec<String> = self.targets.iter().map(Target::to_string).collect();
        let mut text = format!("{}: {}", targets.join(", "), self.reason);
        if self.nobody_there {
            let question = match self.targets.first() {
                Some(Target::Socket(_)) => {
                    "is the server running locally and accepting connections on that socket?"
                }
                _ => "is the server running on that host and accepting TCP/IP connections?",
            };
            text.push_str("; ");
            text.push_str(question);
        }
        text
    }
}

/// The driver's error for bytes that are not PostgreSQL's protocol: an
/// unknown message, a message that does not parse, bytes left over when
/// the peer closed ("bytes remaining on stream"), or a reply to the TLS
/// request that is no TLS. Network failures (a reset, a timeout) and a
/// real server's refusals are not this.
fn answered_without_postgres_protocol(err: &tokio_postgres::Error) -> bool {
    if err.as_db_error().is_some() {
        return false;
    }
    let cause = std::error::Error::source(err);
    match err.to_string().as_str() {
        "unexpected message from server" | "error parsing response from server" => true,
        "error communicating with the server" => cause
            .and_then(|c| c.downcast_ref::<io::Error>())
            .is_some_and(|io| {
                matches!(
                    io.kind(),
                    io::ErrorKind::Other | io::ErrorKind::InvalidData | io::ErrorKind::InvalidInput
                )
            }),
        "error performing TLS handshake" => {
            cause.is_some_and(|c| c.to_string().contains("received corrupt message"))
        }
        _ => false,
    }
}

/// Every failure, one per line (the first line follows the error's prefix).
pub fn render(failures: &[Failure]) -> String {
    let lines: Vec<String> = failures.iter().map(Failure::render).collect();
    lines.join("\n  ")
}

/// The error and its causes, each once.
fn cause_chain(err: &tokio_postgres::Error) -> String {
    let mut reason = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !reason.contains(&text) {
            reason.push_str(": ");
            reason.push_str(&text);
        }
        source = cause.source();
    }
    reason
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    #[test]
    fn one_attempt_per_host_keeps_every_other_setting() {
        let settings = "user=u password=p dbname=d options='-c x=1' application_name=a \
             sslmode=require connect_timeout=7 tcp_user_timeout=3 keepalives=0 \
             keepalives_idle=9 keepalives_interval=4 keepalives_retries=2 \
             target_session_attrs=read-write channel_binding=disable";
        let both =
            Config::from_str(&format!("host=/run/a,db.example port=6000,6001 {settings}")).unwrap();
        let attempts = attempts(&both);
        assert_eq!(attempts.len(), 2);
        for ((targets, config), host_port) in attempts
            .iter()
            .zip(["host=/run/a port=6000", "host=db.example port=6001"])
        {
            let alone = Config::from_str(&format!("{host_port} {settings}")).unwrap();
            assert_eq!(format!("{config:?}"), format!("{alone:?}"));
            assert_eq!(config.get_password(), Some(&b"p"[..]));
            assert_eq!(targets, &super::targets(&alone));
        }
        assert_eq!(
            attempts[0].0,
            [Target::Socket(PathBuf::from("/run/a/.s.PGSQL.6000"))]
        );
        assert_eq!(
            attempts[1].0[0].to_string(),
            "server at \"db.example\", port 6001"
        );
    }

    #[test]
    fn shuffled_hosts_stay_one_attempt() {
        let config =
            Config::from_str("host=a,b port=5432 load_balance_hosts=random user=u").unwrap();
        let attempts = attempts(&config);
        assert_eq!(attempts.len(), 1);
        assert_eq!(attempts[0].0.len(), 2);
    }

    #[test]
    fn failures_ask_what_psql_asks() {
        let socket = Failure {
            targets: vec![Target::Socket(PathBuf::from("/tmp/.s.PGSQL.5432"))],
            reason: "No such file or directory (os error 2)".into(),
            nobody_there: true,
        };
        let tcp = Failure {
            targets: vec![Target::Server {
                host: "localhost".into(),
                port: 5432,
            }],
            reason: "Connection refused (os error 111)".into(),
            nobody_there: true,
        };
        assert_eq!(
            render(&[socket, tcp]),
            "socket \"/tmp/.s.PGSQL.5432\": No such file or directory (os error 2); \
             is the server running locally and accepting connections on that socket?\n  \
             server at \"localhost\", port 5432: Connection refused (os error 111); \
             is the server running on that host and accepting TCP/IP connections?"
        );
    }
}
