//! TLS for the SMTP client, on rustls: certificates verified against the
//! system roots (or CAFILE) and the host name by default; FINGERPRINT pins
//! the server's leaf certificate (SHA-256) instead; TLS_NO_VERIFY turns
//! verification off (insecure, logged at every use); CERTFILE is a client
//! certificate (chain and key in one PEM file, as in dma).

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, ring};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, Error, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};

use crate::config::Config;

/// How the server's certificate is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Policy {
    /// CA chain and host name (the default).
    Verify,
    /// Only the SHA-256 of the leaf certificate (FINGERPRINT).
    Pin([u8; 32]),
    /// Nothing (TLS_NO_VERIFY): insecure.
    None,
}

impl Policy {
    /// The policy `config` asks for.
    pub fn of(config: &Config) -> Policy {
        match (config.fingerprint, config.tls_no_verify) {
            (Some(fp), _) => Policy::Pin(fp),
            (None, true) => Policy::None,
            (None, false) => Policy::Verify,
        }
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

/// The rustls client configuration for `config`. Errors name the file.
pub fn client_config(config: &Config) -> Result<Arc<ClientConfig>, String> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match Policy::of(config) {
        Policy::Verify => {
            let roots = roots(config)?;
            builder.with_root_certificates(roots)
        }
        Policy::Pin(fp) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Pinned {
                fp: Some(fp),
                provider: provider(),
            })),
        Policy::None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Pinned {
                fp: None,
                provider: provider(),
            })),
    };
    let cfg = match &config.certfile {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let shown = path.display();
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("CERTFILE {shown}: {e}"))?
                .collect::<Result<_, _>>()
                .map_err(|e| format!("CERTFILE {shown}: {e}"))?;
            let key = PrivateKeyDer::from_pem_file(path)
                .map_err(|e| format!("CERTFILE {shown}: no private key: {e}"))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("CERTFILE {shown}: {e}"))?
        }
    };
    Ok(Arc::new(cfg))
}

/// CAFILE's certificates, or the system's.
fn roots(config: &Config) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    match &config.cafile {
        Some(path) => {
            for c in CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("CAFILE {}: {e}", path.display()))?
            {
                let c = c.map_err(|e| format!("CAFILE {}: {e}", path.display()))?;
                roots
                    .add(c)
                    .map_err(|e| format!("CAFILE {}: {e}", path.display()))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for c in found.certs {
                let _ = roots.add(c);
            }
        }
    }
    if roots.is_empty() {
        return Err("no trusted CA certificates (install ca-certificates, or set CAFILE)".into());
    }
    Ok(roots)
}

/// The name to check the certificate against (and send as SNI).
pub fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(h.to_string()).map_err(|e| format!("{host}: {e}"))
}

/// Checks the leaf certificate's SHA-256 (`fp`), or nothing at all (`None`,
/// TLS_NO_VERIFY). Handshake signatures are always checked.
#[derive(Debug)]
struct Pinned {
    fp: Option<[u8; 32]>,
    provider: Arc<CryptoProvider>,
}

/// The SHA-256 of a certificate, as FINGERPRINT writes it (hex).
pub fn fingerprint(cert: &[u8]) -> String {
    Sha256::digest(cert)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let got: [u8; 32] = Sha256::digest(end_entity.as_ref()).into();
        if self.fp.is_none_or(|fp| fp == got) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(Error::General(format!(
                "fingerprints do not match: the server's certificate is {}",
                fingerprint(end_entity.as_ref())
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(
            m,
            c,
            d,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(
            m,
            c,
            d,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
