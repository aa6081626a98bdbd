//! A test PKI in a temp dir: a CA, one certificate it signed for 127.0.0.1 (shared by the test's
//! pods, or the portal's), and an unrelated CA.

use std::path::PathBuf;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

pub struct Pki {
    _dir: tempfile::TempDir,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub other_ca: PathBuf,
}

fn self_signed_ca(name: &str) -> (rcgen::Certificate, KeyPair) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    (params.self_signed(&key).unwrap(), key)
}

/// A cluster CA and one certificate it signed (IP SAN 127.0.0.1), plus an unrelated CA.
pub fn pki() -> Pki {
    let dir = tempfile::Builder::new().prefix("ochopod-tls-").tempdir().unwrap();
    let (ca, ca_key) = self_signed_ca("ochopod test ca");
    let (other, _) = self_signed_ca("someone else");
    let pod_key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    params.distinguished_name.push(DnType::CommonName, "ochopod test pod");
    let pod = params.signed_by(&pod_key, &ca, &ca_key).unwrap();
    let write = |name: &str, pem: String| {
        let p = dir.path().join(name);
        std::fs::write(&p, pem).unwrap();
        p
    };
    Pki {
        ca: write("ca.pem", ca.pem()),
        cert: write("pod-cert.pem", pod.pem()),
        key: write("pod-key.pem", pod_key.serialize_pem()),
        other_ca: write("other-ca.pem", other.pem()),
        _dir: dir,
    }
}
