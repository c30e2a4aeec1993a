//! Why a connection string does not parse, said so that a person can fix
//! it: which part (the scheme, a parameter's name, its value) and why. The
//! driver says only "invalid connection string" with a terse cause. The
//! string may hold a password, so only the part at fault is quoted.
//!
//! It is a usage error (exit 2), like a bad `PGPORT`: nothing was tried,
//! the setting itself is wrong; exit 6 means a server could not be reached.

use std::error::Error as _;

use crate::error::Error;

/// libpq's parameters that orch reads, for an unknown one.
const KNOWN_PARAMETERS: &str = "host, hostaddr, port, dbname, user, password, options, \
    application_name, connect_timeout, sslmode, sslrootcert, sslnegotiation, tcp_user_timeout, \
    keepalives, keepalives_idle, keepalives_interval, keepalives_retries, target_session_attrs, \
    channel_binding, load_balance_hosts";

const URL_SCHEMES: [&str; 2] = ["postgresql://", "postgres://"];

const EXAMPLES: &str =
    "a URL (postgresql://user@host:5432/dbname) or key=value settings (host=... dbname=...)";

/// The error for `text` (from `source`, e.g. `--database-url`), which the
/// driver refused with `err`.
pub fn explain(source: &str, text: &str, err: &tokio_postgres::Error) -> Error {
    let cause = err.source().map(ToString::to_string).unwrap_or_default();
    Error::Usage(format!(
        "{source} is not a valid connection string: {}",
        reason(text, &cause)
    ))
}

fn reason(text: &str, cause: &str) -> String {
    let trimmed = text.trim_start();
    let is_url = URL_SCHEMES.iter().any(|s| trimmed.starts_with(s));
    if !is_url {
        if let Some((scheme, _)) = trimmed.split_once("://")
            && !scheme.is_empty()
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        {
            return format!(
                "a {scheme}:// URL is not PostgreSQL's; a PostgreSQL URL starts with postgresql:// or postgres://"
            );
        }
        let first_word = trimmed.split_whitespace().next().unwrap_or_default();
        if first_word.to_ascii_lowercase().starts_with("postgres") && !first_word.contains('=') {
            return format!(
                "it starts like a URL but is not one: a URL starts with postgresql:// or postgres://; expected {EXAMPLES}"
            );
        }
    }
    if let Some(option) = between(cause, "invalid value for option `", "`") {
        let why = why_invalid(option);
        return match value_of(text, option, is_url) {
            Some(value) => format!("{option}={value:?} {why}"),
            None => format!("the value of {option} {why}"),
        };
    }
    if let Some(option) = between(cause, "unknown option `", "`") {
        return format!(
            "unknown parameter {option:?} (the parameters orch reads are {KNOWN_PARAMETERS})"
        );
    }
    if cause.contains("unterminated quoted") {
        return "a value opened with ' is never closed".to_string();
    }
    if is_url {
        if cause == "unterminated parameter" {
            return "a parameter after ? has no =value".to_string();
        }
        return format!("the URL does not parse ({cause})");
    }
    match words_without_equals(text) {
        Some(word) => format!("expected {EXAMPLES}, but {word} has no ="),
        None => format!("expected {EXAMPLES} ({cause})"),
    }
}

/// Why a value of `option` is refused by the driver.
fn why_invalid(option: &str) -> &'static str {
    match option {
        "port" => "is not a port number (1 to 65535)",
        "connect_timeout" | "tcp_user_timeout" | "keepalives_idle" | "keepalives_interval" => {
            "is not a whole number of seconds"
        }
        "keepalives" | "keepalives_retries" => "is not a whole number",
        "hostaddr" => "is not an IP address",
        "host" => "is not a host name or address (an IPv6 address goes in [ ])",
        "target_session_attrs" => "is not one of any, read-write, read-only",
        "channel_binding" => "is not one of disable, prefer, require",
        "load_balance_hosts" => "is not one of disable, random",
        "sslnegotiation" => "is not one of postgres, direct",
        _ => "is not a valid value",
    }
}

fn between<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let rest = &text[text.find(start)? + start.len()..];
    Some(&rest[..rest.find(end)?])
}

/// The value `text` gives `option`, as written (never the password's: the
/// driver accepts any password).
fn value_of(text: &str, option: &str, is_url: bool) -> Option<String> {
    if !is_url {
        let mut words = text.split_whitespace();
        return words.find_map(|word| {
            let value = word.strip_prefix(option)?.strip_prefix('=')?;
            Some(value.trim_matches('\'').to_string())
        });
    }
    let (before_query, query) = text.split_once('?').unwrap_or((text, ""));
    let in_query = query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == option).then(|| value.to_string())
    });
    if in_query.is_some() || option != "port" {
        return in_query;
    }
    // host:port,host:port in the authority.
    let rest = URL_SCHEMES
        .iter()
        .find_map(|s| before_query.trim_start().strip_prefix(s))?;
    let authority = rest.split('/').next().unwrap_or_default();
    let hosts = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    hosts.split(',').find_map(|host| {
        let port = match host.strip_prefix('[') {
            Some(v6) => v6.split_once("]:")?.1,
            None => host.rsplit_once(':')?.1,
        };
        (port.parse::<u16>().is_err() && !port.is_empty()).then(|| port.to_string())
    })
}

/// The first word of key=value settings that has no `=` (a password is
/// never such a word, but a URL with a mistyped scheme could be, so a word
/// with `@` is not quoted).
fn words_without_equals(text: &str) -> Option<String> {
    let word = text.split_whitespace().find(|w| !w.contains('='))?;
    Some(if word.contains('@') {
        "a word".to_string()
    } else {
        format!("{word:?}")
    })
}

#[cfg(test)]
mod tests {
    use crate::connect::ConnectionSettings;

    fn message(text: &str) -> String {
        let err = ConnectionSettings::from_connection_string(text).unwrap_err();
        assert_eq!(err.code(), 2, "{err}");
        err.to_string()
    }

    #[test]
    fn each_part_at_fault_is_named_with_why() {
        let cases = [
            (
                "postgresql://u@h:99999/db",
                "port=\"99999\" is not a port number (1 to 65535)",
            ),
            (
                "host=h port=99999",
                "port=\"99999\" is not a port number (1 to 65535)",
            ),
            (
                "postgresql://[::1]:70000/db",
                "port=\"70000\" is not a port number",
            ),
            (
                "postgresql://h/db?connect_timeout=abc",
                "connect_timeout=\"abc\" is not a whole number of seconds",
            ),
            (
                "host=h connect_timeout=abc",
                "connect_timeout=\"abc\" is not a whole number of seconds",
            ),
            (
                "postgresql://h/db?bogus=1",
                "unknown parameter \"bogus\" (the parameters orch reads are host, hostaddr, port",
            ),
            ("host=h colour=blue", "unknown parameter \"colour\""),
            (
                "postgres//oops",
                "it starts like a URL but is not one: a URL starts with postgresql:// or postgres://",
            ),
            (
                "mysql://u:secret@h/db",
                "a mysql:// URL is not PostgreSQL's; a PostgreSQL URL starts with postgresql:// or postgres://",
            ),
            ("host=h dbname", "but \"dbname\" has no ="),
            ("host='h", "a value opened with ' is never closed"),
            (
                "postgresql://h/db?target_session_attrs=primary",
                "target_session_attrs=\"primary\" is not one of any, read-write, read-only",
            ),
            ("postgresql://[::1/db", "the value of host is not a host"),
        ];
        for (text, expected) in cases {
            let message = message(text);
            assert!(
                message.contains(expected),
                "{text}: {message}\nexpected: {expected}"
            );
            assert!(!message.contains("secret"), "{message}");
        }
    }

    #[test]
    fn the_source_of_the_setting_is_named() {
        assert!(message("mysql://").starts_with("--database-url is not a valid connection string"));
    }
}
