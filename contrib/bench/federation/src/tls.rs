//! The benchmark's throwaway certificate authority: Hearth and every fake
//! server get a leaf certificate for `127.0.0.1` from it, Hearth trusts it
//! through `outbound_ca_file`, the benchmark's own HTTPS client through
//! [`Ca::client_config`]. Shaped as tests/common/ca.rs shapes it (a CA with
//! keyCertSign, leaves with an IP SAN and serverAuth), ECDSA P-256.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::Result;

/// A CA whose certificate is written to `ca.pem` in the run's directory.
pub struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
    pem_path: PathBuf,
}

impl Ca {
    pub fn new(dir: &Path) -> Result<Ca> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "Hearth federation benchmark CA");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let cert = params.self_signed(&key)?;
        let pem_path = dir.join("ca.pem");
        std::fs::write(&pem_path, cert.pem())?;
        Ok(Ca { cert, key, pem_path })
    }

    pub fn pem_path(&self) -> &Path {
        &self.pem_path
    }

    /// A leaf certificate for 127.0.0.1: (certificate PEM, key PEM).
    pub fn issue_loopback(&self) -> Result<(String, String)> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.subject_alt_names = vec![SanType::IpAddress([127, 0, 0, 1].into())];
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "127.0.0.1");
        params.distinguished_name = dn;
        params.is_ca = IsCa::NoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &self.cert, &self.key)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// A rustls server configuration (ring) with a fresh leaf for 127.0.0.1.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>> {
        let (cert, key) = self.issue_loopback()?;
        let certs =
            CertificateDer::pem_slice_iter(cert.as_bytes()).collect::<std::result::Result<Vec<_>, _>>()?;
        let key = PrivateKeyDer::from_pem_slice(key.as_bytes())?;
        let config =
            rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()?
                .with_no_client_auth()
                .with_single_cert(certs, key)?;
        Ok(Arc::new(config))
    }

    /// A rustls client configuration (ring) trusting this CA only.
    pub fn client_config(&self) -> Result<Arc<rustls::ClientConfig>> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.cert.der().clone())?;
        let config =
            rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()?
                .with_root_certificates(roots)
                .with_no_client_auth();
        Ok(Arc::new(config))
    }
}
