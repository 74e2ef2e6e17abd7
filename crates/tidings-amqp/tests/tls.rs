//! `amqps://` with rustls: a TLS endpoint in front of the machine's RabbitMQ.
//!
//! The machine's broker listens in plain AMQP only, and reconfiguring it would mean
//! restarting it for every run; the test instead starts a TLS terminator on a loopback port
//! (rustls, a certificate from a CA made for the test) that forwards to the broker. What is
//! under test is the client: the handshake, the verification against the configured CA, and
//! publishing and consuming over the encrypted connection.

mod common;

use std::sync::Arc;
use std::time::Duration;

use tidings::envelope::Envelope;
use tidings::transport::{Publisher, Subscriber};
use tidings_amqp::{AmqpConfig, AmqpTransport, Error, TlsConfig};
use tidings_testkit::conformance::spec;
use tidings_testkit::pki::Pki;
use tidings_testkit::{Namespace, recv};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::{ServerConfig, crypto::ring};

/// Terminates TLS on a loopback port and forwards to the broker; returns the port.
async fn tls_terminator(pki: &Pki) -> u16 {
    let config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("protocols")
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(pki.cert_der.clone())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pki.key_der.clone())),
        )
        .expect("server config");
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let broker = url::Url::parse(&common::url()).expect("broker url");
    let upstream = format!(
        "{}:{}",
        broker.host_str().unwrap_or("127.0.0.1"),
        broker.port().unwrap_or(5672)
    );
    tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, upstream) = (acceptor.clone(), upstream.clone());
            tokio::spawn(async move {
                // A client that rejects the certificate ends the handshake: nothing to do.
                let Ok(mut tls) = acceptor.accept(socket).await else {
                    return;
                };
                let Ok(mut plain) = TcpStream::connect(&upstream).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    port
}

fn amqps(port: u16) -> String {
    let broker = url::Url::parse(&common::url()).expect("broker url");
    format!(
        "amqps://{}:{}@127.0.0.1:{port}/%2f",
        broker.username(),
        broker.password().unwrap_or_default()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_travel_over_amqps_verified_against_the_configured_ca() {
    if common::connect(common::config()).await.is_none() {
        return;
    }
    let pki = Pki::new();
    let port = tls_terminator(&pki).await;
    let config = AmqpConfig::new(amqps(port))
        .queue_expires(Duration::from_secs(120))
        .tls(TlsConfig::default().with_ca_pem(pki.ca_pem.clone()));
    assert_eq!(config.url().scheme(), Some("amqps"));
    let transport = AmqpTransport::connect(config)
        .await
        .expect("TLS connection");
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_certificate_is_refused_at_once_with_a_tls_error() {
    if common::connect(common::config()).await.is_none() {
        return;
    }
    let pki = Pki::new();
    let port = tls_terminator(&pki).await;
    let started = std::time::Instant::now();
    let error = AmqpTransport::connect(AmqpConfig::new(amqps(port)))
        .await
        .expect_err("a certificate from an unknown CA is refused");
    assert!(
        matches!(error, Error::Tls { .. }),
        "a TLS error, not a retryable outage: {error:?}"
    );
    assert!(!error.is_transient());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "refused at once"
    );
    let password = url::Url::parse(&common::url())
        .expect("url")
        .password()
        .map(str::to_owned)
        .unwrap_or_default();
    assert!(
        password.is_empty() || !format!("{error} {error:?}").contains(&format!(":{password}@")),
        "{error}"
    );
}
