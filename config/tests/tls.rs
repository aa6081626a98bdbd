//! `control.tls`: paths resolve against the declaration's folder, `ca` is optional, and the
//! roots trusted for peers are the CA, else the pod's own certificate.

use std::path::Path;

use ochopod_config::{load, Env};

fn copy_fixture(dir: &Path, name: &str) {
    std::fs::copy(Path::new("fixtures/good/tls").join(name), dir.join(name)).unwrap();
}

#[test]
fn relative_paths_resolve_against_the_declaration_and_the_ca_is_the_root() {
    let dir = tempfile::tempdir().unwrap();
    for f in ["cert.pem", "key.pem", "ca.pem"] {
        copy_fixture(dir.path(), f);
    }
    let yaml = dir.path().join("pod.yaml");
    std::fs::write(&yaml, "cluster: c\ncontrol:\n  tls: { cert: cert.pem, key: key.pem, ca: ca.pem }\n").unwrap();
    let tls = load(&yaml, &Env::new()).unwrap().control.tls.unwrap();
    assert_eq!(tls.cert, dir.path().join("cert.pem"));
    assert_eq!(tls.key, dir.path().join("key.pem"));
    assert_eq!(tls.ca.as_deref(), Some(dir.path().join("ca.pem").as_path()));
    assert_eq!(tls.roots(), dir.path().join("ca.pem"));
}

#[test]
fn without_a_ca_the_pod_trusts_its_own_certificate() {
    let dir = tempfile::tempdir().unwrap();
    copy_fixture(dir.path(), "cert.pem");
    copy_fixture(dir.path(), "key.pem");
    let yaml = dir.path().join("pod.yaml");
    let cert = dir.path().join("cert.pem");
    std::fs::write(&yaml, format!("cluster: c\ncontrol:\n  tls: {{ cert: {}, key: key.pem }}\n", cert.display()))
        .unwrap();
    let tls = load(&yaml, &Env::new()).unwrap().control.tls.unwrap();
    assert_eq!(tls.ca, None);
    assert_eq!(tls.roots(), cert);
}

#[test]
fn a_ca_file_that_is_not_pem_is_named() {
    let dir = tempfile::tempdir().unwrap();
    copy_fixture(dir.path(), "cert.pem");
    copy_fixture(dir.path(), "key.pem");
    std::fs::write(dir.path().join("ca.pem"), "-----BEGIN CERTIFICATE-----\n!!not base64!!\n").unwrap();
    let yaml = dir.path().join("pod.yaml");
    std::fs::write(&yaml, "cluster: c\ncontrol:\n  tls: { cert: cert.pem, key: key.pem, ca: ca.pem }\n").unwrap();
    let e = load(&yaml, &Env::new()).unwrap_err().to_string();
    assert!(e.contains("control.tls.ca: ") && e.contains("ca.pem: not a PEM certificate file"), "{e}");
}

#[test]
fn cert_and_key_are_required() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = dir.path().join("pod.yaml");
    std::fs::write(&yaml, "cluster: c\ncontrol:\n  tls: { ca: ca.pem }\n").unwrap();
    let e = load(&yaml, &Env::new()).unwrap_err().to_string();
    assert!(e.contains("control.tls.cert: is required"), "{e}");
}
