//! TLS and credentials, against a nats-server of the test's own: TLS with a certificate from a
//! CA made for the test, user and password required, JetStream in a temporary directory.
//!
//! Events travel over TLS with the password from the URL; an untrusted certificate and a
//! wrong password are refused with typed errors; neither password ever appears in logs (ours
//! and the client library's, at TRACE), errors or `Debug` output.

use std::process::Stdio;
use std::time::Duration;

use tidings::envelope::Envelope;
use tidings::transport::{Publisher, Subscriber};
use tidings_nats::{Error, NatsConfig, NatsTransport, TlsConfig};
use tidings_testkit::conformance::spec;
use tidings_testkit::logs::Captured;
use tidings_testkit::pki::Pki;
use tidings_testkit::process::{free_port, wait_for_port};
use tidings_testkit::{Namespace, recv};

const USER: &str = "tidings";
const PASSWORD: &str = "S3cr3t-nats-P4ss";
const WRONG: &str = "Wr0ng-nats-P4ss";

/// A TLS, password-protected nats-server with JetStream; killed when dropped.
struct SecureServer {
    _child: tokio::process::Child,
    port: u16,
}

async fn secure_server(pki: &Pki, dir: &std::path::Path) -> Option<SecureServer> {
    let (cert, key) = (dir.join("server.pem"), dir.join("server.key"));
    std::fs::write(&cert, &pki.cert_pem).expect("cert");
    std::fs::write(&key, &pki.key_pem).expect("key");
    let port = free_port();
    let child = tokio::process::Command::new("nats-server")
        .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
        .arg(dir.join("js"))
        .args(["--tls", "--tlscert"])
        .arg(&cert)
        .arg("--tlskey")
        .arg(&key)
        .args(["--user", USER, "--pass", PASSWORD])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn();
    let child = match child {
        Ok(child) => child,
        Err(error) => {
            tidings_testkit::service::unavailable("nats-server (the binary)", &error);
            return None;
        }
    };
    wait_for_port(port, Duration::from_secs(10), "the TLS nats-server").await;
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
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).expect("ca");
    let url = |password: &str| format!("tls://{USER}:{password}@127.0.0.1:{}", server.port);

    let config = NatsConfig::new(url(PASSWORD))
        .client_name("tidings-secure")
        .tls(TlsConfig::default().with_ca_file(&ca));
    let transport = NatsTransport::connect(config.clone())
        .await
        .expect("TLS with the password from the URL");
    let ns = Namespace::new();
    let mut stream = transport
        .subscribe(&spec(&ns, "secure", &["order.*"]))
        .await
        .expect("subscribe");
    let sent = Envelope::new(ns.as_str(), ns.topic("order.created"));
    transport.publish(&sent).await.expect("publish over TLS");
    let d = recv(&mut stream, Duration::from_secs(10))
        .await
        .expect("delivered over TLS");
    assert_eq!(d.envelope().expect("decodable").id, sent.id);
    d.ack().await.expect("ack");

    let untrusted = NatsTransport::connect(NatsConfig::new(url(PASSWORD)))
        .await
        .expect_err("a certificate from an unknown CA is refused");
    assert!(matches!(untrusted, Error::Tls(_)), "{untrusted:?}");
    assert!(
        !untrusted.is_transient(),
        "retrying cannot fix a certificate"
    );
    let refused = NatsTransport::connect(
        NatsConfig::new(url(WRONG)).tls(TlsConfig::default().with_ca_file(&ca)),
    )
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
