//! TLS for the control port: a rustls server configuration from PEM files.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::ring;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("TLS certificate {path}: {reason}")]
    Cert { path: PathBuf, reason: String },
    #[error("TLS key {path}: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error("TLS certificate {cert} with key {key}: {reason}")]
    Config { cert: PathBuf, key: PathBuf, reason: String },
}

/// The certificate chain (leaf first) and private key of `tls`, with rustls' safe defaults and
/// the `ring` provider (explicit, so no process-wide default provider has to be installed).
pub fn server_config(tls: &ochopod_config::Tls) -> Result<ServerConfig, TlsError> {
    let certs = load_certs(&tls.cert)?;
    let key = PrivateKeyDer::from_pem_file(&tls.key)
        .map_err(|e| TlsError::Key { path: tls.key.clone(), reason: e.to_string() })?;
    let config_error = |reason: String| TlsError::Config { cert: tls.cert.clone(), key: tls.key.clone(), reason };
    ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| config_error(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| config_error(e.to_string()))
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let cert_error = |reason: String| TlsError::Cert { path: path.to_path_buf(), reason };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| cert_error(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert_error(e.to_string()))?;
    if certs.is_empty() {
        return Err(cert_error("no certificate in the file".into()));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_or_empty_files_are_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        let tls = ochopod_config::Tls { cert: cert.clone(), key: key.clone(), ca: None };
        let e = server_config(&tls).unwrap_err().to_string();
        assert!(e.contains("cert.pem"), "{e}");

        std::fs::write(&cert, "not a pem").unwrap();
        let e = server_config(&tls).unwrap_err().to_string();
        assert!(e.contains("cert.pem") && e.contains("no certificate"), "{e}");

        let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        std::fs::write(&cert, ck.cert.pem()).unwrap();
        let e = server_config(&tls).unwrap_err().to_string();
        assert!(e.contains("key.pem"), "{e}");

        std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
        server_config(&tls).unwrap();
    }
}
