//! `align serve` over HTTPS with a generated self-signed certificate.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure should panic

mod support;

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, ServerName};
use support::TestServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn the_server_answers_over_https_with_a_self_signed_certificate() {
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let certs = tempfile::tempdir().unwrap();
    let cert_file = certs.path().join("cert.pem");
    let key_file = certs.path().join("key.pem");
    std::fs::write(&cert_file, generated.cert.pem()).unwrap();
    std::fs::write(&key_file, generated.signing_key.serialize_pem()).unwrap();
    let (c, k) = (cert_file.clone(), key_file.clone());
    let s = TestServer::start_with(move |cfg| {
        cfg.tls_cert_file = Some(c);
        cfg.tls_key_file = Some(k);
    })
    .await;

    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(generated.cert.der().to_vec()))
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    for (path, expect) in [("/healthz", "200"), ("/api/v1/me", "200")] {
        let tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let mut tls = connector.connect(name, tcp).await.unwrap();
        let req = format!(
            "GET {path} HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {}\r\nconnection: close\r\n\r\n",
            s.admin_key
        );
        tls.write_all(req.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        let _ = tls.read_to_end(&mut out).await;
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.starts_with(&format!("HTTP/1.1 {expect}")),
            "{path}: {text}"
        );
    }
    // Plain HTTP to the TLS port gets nowhere.
    let mut plain = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        plain.read_to_end(&mut buf),
    )
    .await;
    assert!(!String::from_utf8_lossy(&buf).contains("200 OK"));
    s.stop().await;
}

#[tokio::test]
async fn a_bad_certificate_file_is_a_clear_start_error() {
    let dir = tempfile::tempdir().unwrap();
    let bogus = dir.path().join("nope.pem");
    std::fs::write(&bogus, "not a certificate").unwrap();
    let config = align_server::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().join("data"),
        tls_cert_file: Some(bogus.clone()),
        tls_key_file: Some(bogus),
        ..align_server::Config::default()
    };
    let err = align_server::Server::start(config).await.unwrap_err();
    assert!(err.to_string().contains("nope.pem"), "{err}");
}
