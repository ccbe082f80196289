//! Optional HTTPS: rustls with the ring provider, HTTP/2 and HTTP/1.1 by ALPN.

use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::error::Error;

fn tls_error(path: &Path, reason: impl std::fmt::Display) -> Error {
    Error::Tls {
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

/// Builds an acceptor from PEM files (certificate chain, then private key).
pub(crate) fn acceptor(cert_file: &Path, key_file: &Path) -> Result<TlsAcceptor, Error> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_file)
        .map_err(|e| tls_error(cert_file, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| tls_error(cert_file, e))?;
    if certs.is_empty() {
        return Err(tls_error(cert_file, "no certificate found"));
    }
    // The key's own parse error may quote nothing secret, but keep the message generic anyway.
    let key = PrivateKeyDer::from_pem_file(key_file)
        .map_err(|_| tls_error(key_file, "no usable PEM private key found"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error(cert_file, e))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| tls_error(cert_file, e))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
