//! TLS and a password, against a redis-server of the test's own: TLS only, with a
//! certificate from a CA made for the test, `requirepass` set.
//!
//! Events travel over TLS with the password from the URL; an untrusted certificate and a
//! wrong password are refused with typed errors; neither password ever appears in logs (ours
//! and the client library's, at TRACE), errors or `Debug` output.

use std::process::Stdio;
use std::time::Duration;

use tidings::envelope::Envelope;
use tidings::transport::{Publisher, Subscriber};
use tidings_redis::{Error, RedisConfig, RedisTransport};
use tidings_testkit::conformance::spec;
use tidings_testkit::logs::Captured;
use tidings_testkit::pki::Pki;
use tidings_testkit::process::{free_port, wait_for_port};
use tidings_testkit::{Namespace, recv};

const PASSWORD: &str = "S3cr3t-redis-P4ss";
const WRONG: &str = "Wr0ng-redis-P4ss";

/// A TLS-only, password-protected redis-server; killed when dropped.
struct SecureServer {
    _child: tokio::process::Child,
    port: u16,
}

async fn secure_server(pki: &Pki, dir: &std::path::Path) -> Option<SecureServer> {
    let (cert, key, ca) = (
        dir.join("server.pem"),
        dir.join("server.key"),
        dir.join("ca.pem"),
    );
    std::fs::write(&cert, &pki.cert_pem).expect("cert");
    std::fs::write(&key, &pki.key_pem).expect("key");
    std::fs::write(&ca, &pki.ca_pem).expect("ca");
    let port = free_port();
    let child = tokio::process::Command::new("redis-server")
        .args([
            "--bind",
            "127.0.0.1",
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
        ])
        .arg("--tls-cert-file")
        .arg(&cert)
        .arg("--tls-key-file")
        .arg(&key)
        .arg("--tls-ca-cert-file")
        .arg(&ca)
        .args([
            "--tls-auth-clients",
            "no",
            "--requirepass",
            PASSWORD,
            "--save",
            "",
        ])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn();
    let child = match child {
        Ok(child) => child,
        Err(error) => {
            tidings_testkit::service::unavailable("redis-server (the binary)", &error);
            return None;
        }
    };
    wait_for_port(port, Duration::from_secs(10), "the TLS redis-server").await;
    Some(SecureServer {
        _child: child,
        port,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_a_password_work_and_never_show() {
    let logs = Captured::install();
    let pki = Pki::new();
    let dir = tempfile::tempdir().expect("dir");
    let Some(server) = secure_server(&pki, dir.path()).await else {
        return;
    };
    let url = |password: &str| format!("rediss://:{password}@127.0.0.1:{}/0", server.port);

    let config = RedisConfig::new(url(PASSWORD)).ca_pem(pki.ca_pem.clone());
    let transport = RedisTransport::connect(config.clone())
        .await
        .expect("TLS with the password from the URL");
    let ns = Namespace::new();
    let mut stream = transport
        .subscribe(&spec(&ns, "secure", &["order.*"]))
        .await
        .expect("subscribe over TLS");
    let sent = Envelope::new(ns.as_str(), ns.topic("order.created"));
    transport.publish(&sent).await.expect("publish over TLS");
    let d = recv(&mut stream, Duration::from_secs(10))
        .await
        .expect("delivered over TLS");
    assert_eq!(d.envelope().expect("decodable").id, sent.id);
    d.ack().await.expect("ack");

    let untrusted = RedisTransport::connect(RedisConfig::new(url(PASSWORD)))
        .await
        .expect_err("a certificate from an unknown CA is refused");
    assert!(matches!(untrusted, Error::Tls(_)), "{untrusted:?}");
    assert!(
        !untrusted.is_transient(),
        "retrying cannot fix a certificate"
    );
    let refused = RedisTransport::connect(RedisConfig::new(url(WRONG)).ca_pem(pki.ca_pem.clone()))
        .await
        .expect_err("a wrong password is refused");
    assert!(
        matches!(refused, Error::AccessRefused { .. }),
        "{refused:?}"
    );
    assert!(
        !refused.is_transient(),
        "retrying a wrong password cannot help"
    );

    let shown = format!(
        "{untrusted} {untrusted:?} {refused} {refused:?} {config:?} {transport:?} {}",
        config.url()
    );
    drop(stream);
    transport.close().await.expect("close");
    let logs = logs.text();
    assert!(!logs.is_empty(), "the capture works");
    for secret in [PASSWORD, WRONG] {
        assert!(!shown.contains(secret), "`{secret}` shown in: {shown}");
        assert!(!logs.contains(secret), "`{secret}` logged");
    }
    assert!(shown.contains("***"), "the redaction is visible: {shown}");
}
