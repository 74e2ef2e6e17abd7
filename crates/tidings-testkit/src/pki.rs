//! A certificate authority made for a test, and a server certificate it signed, for TLS tests
//! against brokers started on loopback ports.

use base64::Engine as _;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

/// A CA and a server certificate for `127.0.0.1` and `localhost`, in DER and PEM.
#[derive(Debug, Clone)]
pub struct Pki {
    /// The CA certificate, PEM: what clients trust.
    pub ca_pem: String,
    /// The server certificate, DER.
    pub cert_der: Vec<u8>,
    /// The server certificate, PEM.
    pub cert_pem: String,
    /// The server's PKCS#8 private key, DER.
    pub key_der: Vec<u8>,
    /// The server's PKCS#8 private key, PEM.
    pub key_pem: String,
}

/// PEM text of DER bytes under `label` (rcgen's own PEM support would add a second base64).
fn pem(label: &str, der: &[u8]) -> String {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).expect("base64 is ASCII"))
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

impl Pki {
    /// A fresh CA and server certificate.
    ///
    /// # Panics
    ///
    /// If key generation fails (it does not, on a working system).
    pub fn new() -> Self {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate().expect("key");
        let ca_cert = ca_params.self_signed(&ca_key).expect("ca");
        let issuer = Issuer::new(ca_params, ca_key);
        let server_key = KeyPair::generate().expect("key");
        let server = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .expect("params")
            .signed_by(&server_key, &issuer)
            .expect("server certificate");
        let key_der = server_key.serialize_der();
        Self {
            ca_pem: pem("CERTIFICATE", ca_cert.der()),
            cert_pem: pem("CERTIFICATE", server.der()),
            cert_der: server.der().to_vec(),
            key_pem: pem("PRIVATE KEY", &key_der),
            key_der,
        }
    }
}

impl Default for Pki {
    fn default() -> Self {
        Self::new()
    }
}
