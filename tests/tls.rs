//! TLS against a real PostgreSQL with `ssl = on` and a certificate from a
//! test CA: each sslmode connects (or refuses) as libpq's does, and the
//! server sees an encrypted session.

use std::os::unix::fs::PermissionsExt;

use orch::connect::ConnectionSettings;
use orch::pg_server::{PgServer, ServerOptions};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

/// A CA, and a server certificate it signed for `localhost` only.
struct Certificates {
    dir: tempfile::TempDir,
}

impl Certificates {
    fn new() -> Certificates {
        let dir = tempfile::Builder::new()
            .prefix("orch-tls-")
            .tempdir()
            .unwrap();
        // The server (the postgres OS user when we are root) reads from here.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "orch test CA");
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);
        let server_key = KeyPair::generate().unwrap();
        let server = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        let server_cert = server.signed_by(&server_key, &issuer).unwrap();
        let write = |name: &str, text: &str, mode: u32| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            if nix::unistd::geteuid().is_root() {
                let user = nix::unistd::User::from_name("postgres").unwrap().unwrap();
                nix::unistd::chown(&path, Some(user.uid), Some(user.gid)).unwrap();
            }
        };
        write("ca.pem", &ca_cert.pem(), 0o644);
        write("server.crt", &server_cert.pem(), 0o644);
        write("server.key", &server_key.serialize_pem(), 0o600);
        // A CA that signed nothing here.
        let other_key = KeyPair::generate().unwrap();
        let mut other = CertificateParams::new(Vec::<String>::new()).unwrap();
        other.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        write(
            "other-ca.pem",
            &other.self_signed(&other_key).unwrap().pem(),
            0o644,
        );
        Certificates { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_tls_server(certs: &Certificates, port: u16) -> PgServer {
    let setting = |k: &str, v: String| (k.to_string(), v);
    PgServer::start(ServerOptions {
        settings: vec![
            setting("listen_addresses", "127.0.0.1".into()),
            setting("port", port.to_string()),
            setting("ssl", "on".into()),
            setting("ssl_cert_file", certs.path("server.crt")),
            setting("ssl_key_file", certs.path("server.key")),
        ],
        ..ServerOptions::default()
    })
    .expect("a throwaway PostgreSQL with TLS")
}

/// Connect with `query` appended to a TCP URL; whether the session is
/// encrypted, or the error.
fn session_ssl(host: &str, port: u16, query: &str) -> Result<bool, String> {
    let url = format!("postgresql://postgres@{host}:{port}/postgres?{query}");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let settings =
            ConnectionSettings::resolve_with(Some(&url), |_| None).map_err(|e| e.to_string())?;
        let client = settings
            .connect("orch tls test")
            .await
            .map_err(|e| e.to_string())?;
        let row = client
            .query_one(
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                &[],
            )
            .await
            .map_err(|e| e.to_string())?;
        Ok(row.get(0))
    })
}

#[test]
fn sslmodes_connect_and_check_as_libpq_does() {
    // This test needs a server of its own (TLS, TCP), even when the suite
    // uses the one at DATABASE_URL.
    let certs = Certificates::new();
    let port = free_port();
    let _server = start_tls_server(&certs, port);
    let ca = format!("sslrootcert={}", certs.path("ca.pem"));
    let other_ca = format!("sslrootcert={}", certs.path("other-ca.pem"));

    assert_eq!(session_ssl("127.0.0.1", port, "sslmode=disable"), Ok(false));
    assert_eq!(session_ssl("127.0.0.1", port, "sslmode=prefer"), Ok(true));
    // require: encrypted, the server's certificate not checked.
    assert_eq!(session_ssl("127.0.0.1", port, "sslmode=require"), Ok(true));
    // verify-full: the chain and the name.
    assert_eq!(
        session_ssl("localhost", port, &format!("sslmode=verify-full&{ca}")),
        Ok(true)
    );
    let wrong_name = session_ssl("127.0.0.1", port, &format!("sslmode=verify-full&{ca}"));
    assert!(
        wrong_name
            .as_ref()
            .is_err_and(|e| e.contains("certificate")),
        "{wrong_name:?}"
    );
    // verify-ca: the chain only.
    assert_eq!(
        session_ssl("127.0.0.1", port, &format!("sslmode=verify-ca&{ca}")),
        Ok(true)
    );
    let unknown_ca = session_ssl("localhost", port, &format!("sslmode=verify-ca&{other_ca}"));
    assert!(
        unknown_ca
            .as_ref()
            .is_err_and(|e| e.contains("UnknownIssuer")),
        "{unknown_ca:?}"
    );
    // require with roots given checks them too (libpq does).
    let require_checked = session_ssl("localhost", port, &format!("sslmode=require&{other_ca}"));
    assert!(require_checked.is_err(), "{require_checked:?}");
    let no_roots = session_ssl(
        "localhost",
        port,
        "sslmode=verify-full&sslrootcert=/nonexistent.pem",
    );
    assert!(
        no_roots
            .as_ref()
            .is_err_and(|e| e.contains("cannot read root certificates from /nonexistent.pem")),
        "{no_roots:?}"
    );
}
