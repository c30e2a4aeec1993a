//! TLS as libpq does it: `sslmode` (disable, prefer (the default), require,
//! verify-ca, verify-full) and `sslrootcert` (a PEM file, or `system` for the
//! operating system's roots), from the connection string or `PGSSLMODE` /
//! `PGSSLROOTCERT`. tokio-postgres knows only disable/prefer/require, so
//! these two settings are taken out of the string before it parses it.
//!
//! As in libpq: `prefer` and `require` encrypt without checking who the
//! server is, unless root certificates are given (then `require` checks
//! them like `verify-ca`); `verify-ca` checks the server's certificate
//! chain; `verify-full` also checks that it names the host. TLS does not
//! apply to unix sockets.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::error::{Error, Result};

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Result<SslMode> {
        Ok(match value {
            "disable" => SslMode::Disable,
            // Without a client certificate there is nothing between these.
            "allow" | "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => {
                return Err(Error::Usage(format!(
                    "sslmode={other:?} is not one of disable, allow, prefer, require, verify-ca, verify-full"
                )));
            }
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// What tokio-postgres is told: it negotiates, the verifier checks.
    pub fn driver_mode(self) -> tokio_postgres::config::SslMode {
        match self {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            _ => tokio_postgres::config::SslMode::Require,
        }
    }
}

/// The TLS settings of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub mode: SslMode,
    /// `sslrootcert`: a PEM file, or `system`.
    pub root_cert: Option<String>,
}

impl TlsSettings {
    /// Take `sslmode` and `sslrootcert` out of a connection string (URL or
    /// key=value), falling back to `PGSSLMODE` / `PGSSLROOTCERT`; returns
    /// the string without them.
    pub fn take(text: &str, env: &impl Fn(&str) -> Option<String>) -> Result<(String, Self)> {
        let (rest, mut found) =
            if text.starts_with("postgres://") || text.starts_with("postgresql://") {
                take_from_url(text)
            } else {
                take_from_key_values(text)
            };
        let var = |name: &str| env(name).filter(|v| !v.is_empty());
        let mode = match found.remove("sslmode").or_else(|| var("PGSSLMODE")) {
            Some(mode) => SslMode::parse(&mode)?,
            None => SslMode::Prefer,
        };
        let root_cert = found.remove("sslrootcert").or_else(|| var("PGSSLROOTCERT"));
        Ok((rest, TlsSettings { mode, root_cert }))
    }

    /// The connector for these settings.
    pub fn connector(&self) -> Result<MakeRustlsConnect> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Usage(format!("cannot set up TLS: {e}")))?;
        let roots = self.roots()?;
        let verifier: Arc<dyn ServerCertVerifier> = match (self.mode, roots) {
            (SslMode::Disable | SslMode::Prefer | SslMode::Require, None) => Arc::new(Lenient {
                chain: None,
                provider,
            }),
            (SslMode::VerifyFull, Some(roots)) => webpki(roots, provider)?,
            (_, Some(roots)) => Arc::new(Lenient {
                chain: Some(webpki(roots, provider.clone())?),
                provider,
            }),
            (mode, None) => {
                return Err(Error::Usage(format!(
                    "sslmode={} checks the server's certificate, so it needs root certificates: set sslrootcert=/path/to/root.crt (or sslrootcert=system for the operating system's), or put them in ~/.postgresql/root.crt",
                    mode.name()
                )));
            }
        };
        let config = builder
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Ok(MakeRustlsConnect::new(config))
    }

    /// The root certificates to check the server against: `sslrootcert`,
    /// else libpq's `~/.postgresql/root.crt` if it exists.
    fn roots(&self) -> Result<Option<RootCertStore>> {
        let mut store = RootCertStore::empty();
        let path = match self.root_cert.as_deref() {
            Some("system") => {
                let found = rustls_native_certs::load_native_certs();
                for cert in found.certs {
                    let _ = store.add(cert);
                }
                if store.is_empty() {
                    return Err(Error::Usage(
                        "sslrootcert=system: no root certificates found in the operating system's store".to_string(),
                    ));
                }
                return Ok(Some(store));
            }
            Some(path) => PathBuf::from(path),
            None => match default_root_cert() {
                Some(path) if path.exists() => path,
                _ => return Ok(None),
            },
        };
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&path)
            .and_then(|certs| certs.collect())
            .map_err(|e| {
                Error::Usage(format!(
                    "cannot read root certificates from {}: {e}",
                    path.display()
                ))
            })?;
        let (added, _) = store.add_parsable_certificates(certs);
        if added == 0 {
            return Err(Error::Usage(format!(
                "{} holds no usable root certificate",
                path.display()
            )));
        }
        Ok(Some(store))
    }
}

fn default_root_cert() -> Option<PathBuf> {
    std::env::var_os("HOME").map(|home| Path::new(&home).join(".postgresql/root.crt"))
}

fn webpki(
    roots: RootCertStore,
    provider: Arc<rustls::crypto::CryptoProvider>,
) -> Result<Arc<WebPkiServerVerifier>> {
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| Error::Usage(format!("cannot set up TLS: {e}")))
}

/// What libpq checks of the server's certificate in all but verify-full:
/// nothing (`prefer`/`require` without roots: encrypted, server not
/// checked), or with `chain` the chain up to a trusted root but not the
/// name (`verify-ca`, and `require` with roots). The handshake's signatures
/// are verified either way.
#[derive(Debug)]
struct Lenient {
    chain: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for Lenient {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// TLS keys found in a connection string, by name.
type Found = std::collections::HashMap<&'static str, String>;

const TLS_KEYS: [&str; 2] = ["sslmode", "sslrootcert"];

/// `postgresql://...?sslmode=verify-full&sslrootcert=/x` -> the URL
/// without those two, and their (percent-decoded) values.
fn take_from_url(url: &str) -> (String, Found) {
    let mut found = Found::new();
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_string(), found);
    };
    let (query, fragment) = match query.split_once('#') {
        Some((q, f)) => (q, Some(f)),
        None => (query, None),
    };
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match TLS_KEYS.iter().find(|k| **k == key) {
            Some(k) => {
                found.insert(k, percent_decode(value));
            }
            None => kept.push(pair),
        }
    }
    let mut out = base.to_string();
    if !kept.is_empty() {
        out.push('?');
        out.push_str(&kept.join("&"));
    }
    if let Some(fragment) = fragment {
        out.push('#');
        out.push_str(fragment);
    }
    (out, found)
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).unwrap() * 16 + hex(l).unwrap()) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `host=h sslmode='verify-full' dbname=d` -> `host=h dbname=d` and the
/// (unquoted) values of the TLS keys. Quoting as libpq: single quotes,
/// backslash escapes.
fn take_from_key_values(text: &str) -> (String, Found) {
    let mut found = Found::new();
    let mut kept = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        if i == chars.len() {
            break;
        }
        let start = i;
        while i < chars.len() && chars[i] != '=' && !chars[i].is_whitespace() {
            i += 1;
        }
        let key: String = chars[start..i].iter().collect();
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        let mut value = String::new();
        if i < chars.len() && chars[i] == '=' {
            i += 1;
            while i < chars.len() && chars[i].is_whitespace() {
                i += 1;
            }
            if i < chars.len() && chars[i] == '\'' {
                i += 1;
                while i < chars.len() && chars[i] != '\'' {
                    if chars[i] == '\\' && i + 1 < chars.len() {
                        i += 1;
                    }
                    value.push(chars[i]);
                    i += 1;
                }
                i += 1;
            } else {
                while i < chars.len() && !chars[i].is_whitespace() {
                    if chars[i] == '\\' && i + 1 < chars.len() {
                        i += 1;
                    }
                    value.push(chars[i]);
                    i += 1;
                }
            }
        }
        let raw: String = chars[start..i.min(chars.len())].iter().collect();
        match TLS_KEYS.iter().find(|k| **k == key) {
            Some(k) => {
                found.insert(k, value);
            }
            None => kept.push(raw),
        }
    }
    (kept.join(" "), found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn take(text: &str, env: &[(&str, &str)]) -> (String, TlsSettings) {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        TlsSettings::take(text, &|name| {
            env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
        .unwrap()
    }

    #[test]
    fn tls_keys_come_out_of_urls() {
        let (rest, tls) = take(
            "postgresql://u@db.example/app?sslmode=verify-full&application_name=x&sslrootcert=%2Fetc%2Fca.pem",
            &[],
        );
        assert_eq!(rest, "postgresql://u@db.example/app?application_name=x");
        assert_eq!(tls.mode, SslMode::VerifyFull);
        assert_eq!(tls.root_cert.as_deref(), Some("/etc/ca.pem"));
        let (rest, tls) = take("postgresql://db/app?sslmode=require", &[]);
        assert_eq!(
            (rest.as_str(), tls.mode),
            ("postgresql://db/app", SslMode::Require)
        );
    }

    #[test]
    fn tls_keys_come_out_of_key_value_strings() {
        let (rest, tls) = take(
            "host=db sslmode = 'verify-ca' dbname='my app' sslrootcert=/a\\ b.pem",
            &[],
        );
        assert_eq!(rest, "host=db dbname='my app'");
        assert_eq!(tls.mode, SslMode::VerifyCa);
        assert_eq!(tls.root_cert.as_deref(), Some("/a b.pem"));
    }

    #[test]
    fn environment_fills_in_and_prefer_is_the_default() {
        let (_, tls) = take("host=db", &[]);
        assert_eq!(tls.mode, SslMode::Prefer);
        let (_, tls) = take(
            "host=db",
            &[("PGSSLMODE", "require"), ("PGSSLROOTCERT", "system")],
        );
        assert_eq!(tls.mode, SslMode::Require);
        assert_eq!(tls.root_cert.as_deref(), Some("system"));
        let (_, tls) = take(
            "postgresql://db/x?sslmode=disable",
            &[("PGSSLMODE", "require")],
        );
        assert_eq!(tls.mode, SslMode::Disable);
    }

    #[test]
    fn a_bad_mode_is_a_usage_error() {
        let err = TlsSettings::take("host=db sslmode=strict", &|_| None).unwrap_err();
        assert!(
            err.to_string().contains("sslmode=\"strict\" is not one of"),
            "{err}"
        );
    }

    #[test]
    fn verifying_modes_need_roots() {
        let tls = TlsSettings {
            mode: SslMode::VerifyFull,
            root_cert: Some("/nonexistent/root.crt".to_string()),
        };
        let err = tls.connector().err().unwrap();
        assert!(
            err.to_string()
                .contains("cannot read root certificates from /nonexistent/root.crt"),
            "{err}"
        );
        let tls = TlsSettings {
            mode: SslMode::Require,
            root_cert: None,
        };
        assert!(tls.connector().is_ok() || default_root_cert().is_some_and(|p| p.exists()));
    }
}
