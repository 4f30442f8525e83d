//! A throwaway certificate authority for the cross-server tests: every
//! server of a test (Hearth, Synapse) gets a leaf certificate from it for
//! the name it is reached by (an IP literal such as `127.0.0.1`, or a DNS
//! name), and every client trusts it: Hearth through `outbound_ca_file`,
//! Synapse through `federation_custom_ca_list`, the harness's own HTTPS
//! client through [`TestCa::client_config`].
//!
//! The certificates are shaped for strict verifiers on both sides (rustls'
//! webpki, OpenSSL under Twisted and service_identity): the CA has a
//! critical basicConstraints CA:TRUE and keyCertSign/cRLSign; a leaf has
//! no basicConstraints (so not a CA), digitalSignature/keyEncipherment,
//! serverAuth (and clientAuth),
//! its name as a subject alternative name (an IP SAN for an IP, a DNS SAN
//! otherwise) and in its CN, and subject and authority key identifiers.
//! ECDSA P-256 keys, PKCS#8 PEM.
#![allow(dead_code)]

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};

/// A CA whose certificate is `ca.pem` in the directory it was made in.
pub struct TestCa {
    cert: rcgen::Certificate,
    key: KeyPair,
    pem_path: PathBuf,
}

impl TestCa {
    /// A new CA (fresh key), its certificate written to `dir/ca.pem`.
    pub fn new(dir: &Path) -> TestCa {
        let key = KeyPair::generate().expect("generating the CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "Hearth test CA");
        dn.push(DnType::OrganizationName, "Hearth tests");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let cert = params.self_signed(&key).expect("self-signing the CA");
        let pem_path = dir.join("ca.pem");
        std::fs::write(&pem_path, cert.pem()).expect("writing ca.pem");
        TestCa { cert, key, pem_path }
    }

    /// The path of the CA's certificate (PEM).
    pub fn pem_path(&self) -> &Path {
        &self.pem_path
    }

    /// The CA's certificate (PEM).
    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    /// Issues a server certificate for `name` (an IP address or a DNS
    /// name) and writes it and its key to `dir/NAME.pem` and `dir/NAME.key`
    /// (mode 0600); their paths.
    pub fn issue(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let (cert_pem, key_pem) = self.issue_pem(name);
        let file = name.replace(['/', ':'], "_");
        let cert_path = dir.join(format!("{file}.pem"));
        let key_path = dir.join(format!("{file}.key"));
        std::fs::write(&cert_path, cert_pem).expect("writing the certificate");
        write_private(&key_path, &key_pem);
        (cert_path, key_path)
    }

    /// Issues a server certificate for `name`; (certificate PEM, key PEM).
    pub fn issue_pem(&self, name: &str) -> (String, String) {
        let key = KeyPair::generate().expect("generating a leaf key");
        let san = match name.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(name.try_into().expect("a valid DNS name")),
        };
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("leaf params");
        params.subject_alt_names = vec![san];
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        params.distinguished_name = dn;
        // No basicConstraints at all: rcgen's ExplicitNoCa writes `cA
        // FALSE` explicitly, which DER forbids (a DEFAULT value), and
        // Python's cryptography, under Synapse's certificate check,
        // rejects the whole certificate for it.
        params.is_ca = IsCa::NoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages =
            vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &self.cert, &self.key).expect("signing a leaf");
        (cert.pem(), key.serialize_pem())
    }

    /// A rustls client configuration (ring provider) that trusts this CA
    /// and nothing else.
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.cert.der().clone()).expect("the CA as a root");
        Arc::new(
            rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .expect("protocol versions")
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    }
}

/// Writes `contents` to a new file only its owner may read.
fn write_private(path: &Path, contents: &str) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .expect("creating a key file");
    file.write_all(contents.as_bytes()).expect("writing a key file");
}
