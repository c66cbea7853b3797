//! TLS for the WebSocket listener: a rustls acceptor built from PEM files (the certificate
//! chain, its key and, for mTLS, the CA that client certificates must chain to), which can
//! be rebuilt from the same files while the server runs (`rexec serve` does it on SIGHUP).
//!
//! A reload swaps the configuration new handshakes use; connections already open keep the
//! one they were made with. A reload that fails (a file missing, a PEM that does not parse,
//! a key that does not match the certificate) changes nothing. Only the ring provider is
//! used, so no C crypto library is built.

use crate::sync::lock;
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ServerConnection, WebPkiClientVerifier};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio_rustls::TlsAcceptor;

/// The PEM files a TLS listener is made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The server's certificate, then any intermediates.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// With it, every client must present a certificate issued under this CA.
    pub client_ca: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {}: {reason}", path.display())]
    Read { path: PathBuf, reason: String },
    #[error("{} holds no PEM {what}", path.display())]
    Empty { path: PathBuf, what: &'static str },
    #[error("{}: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },
}

/// The acceptor new TLS handshakes use, and the files it is rebuilt from.
pub struct ReloadableTls {
    files: TlsFiles,
    current: Mutex<TlsAcceptor>,
}

impl ReloadableTls {
    pub fn load(files: TlsFiles) -> Result<Arc<Self>, TlsError> {
        let acceptor = build(&files)?;
        Ok(Arc::new(Self {
            files,
            current: Mutex::new(acceptor),
        }))
    }

    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// The acceptor for a new connection.
    pub fn acceptor(&self) -> TlsAcceptor {
        lock(&self.current).clone()
    }

    /// Re-read the files; on error the current configuration stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let acceptor = build(&self.files)?;
        *lock(&self.current) = acceptor;
        Ok(())
    }
}

fn build(files: &TlsFiles) -> Result<TlsAcceptor, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = read_certificates(&files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|err| pem_error(&files.key, err))?;
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|err| invalid(&files.cert, err))?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for certificate in read_certificates(path)? {
                roots.add(certificate).map_err(|err| invalid(path, err))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                .build()
                .map_err(|err| invalid(path, err))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder.with_single_cert(chain, key).map_err(|err| {
        invalid(
            &files.key,
            format!("does not fit {}: {err}", files.cert.display()),
        )
    })?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(|err| pem_error(path, err))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| pem_error(path, err))?;
    if certificates.is_empty() {
        return Err(TlsError::Empty {
            path: path.to_owned(),
            what: "certificate",
        });
    }
    Ok(certificates)
}

fn pem_error(path: &Path, err: rustls::pki_types::pem::Error) -> TlsError {
    match err {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::Empty {
            path: path.to_owned(),
            what: "private key",
        },
        rustls::pki_types::pem::Error::Io(err) => TlsError::Read {
            path: path.to_owned(),
            reason: err.to_string(),
        },
        err => invalid(path, err),
    }
}

fn invalid(path: &Path, reason: impl std::fmt::Display) -> TlsError {
    TlsError::Invalid {
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

/// The subject of the client certificate the handshake verified, RFC 4514 style
/// (`CN=alice,O=Example`: the most specific attribute first).
pub fn client_certificate_subject(connection: &ServerConnection) -> Option<String> {
    let certificate = connection.peer_certificates()?.first()?;
    let (_, parsed) = x509_parser::parse_x509_certificate(certificate).ok()?;
    let registry = x509_parser::objects::oid_registry();
    let mut rdns = Vec::new();
    for rdn in parsed.subject().iter_rdn() {
        let mut attributes = Vec::new();
        for attribute in rdn.iter() {
            let name = x509_parser::objects::oid2abbrev(attribute.attr_type(), registry)
                .map(str::to_owned)
                .unwrap_or_else(|_| attribute.attr_type().to_id_string());
            let value = attribute
                .as_str()
                .map_or_else(|_| format!("#{}", hex(attribute.attr_value().data)), escape);
            attributes.push(format!("{name}={value}"));
        }
        rdns.push(attributes.join("+"));
    }
    rdns.reverse();
    Some(rdns.join(","))
}

/// RFC 4514 §2.4 escaping of an attribute value.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, '"' | '+' | ',' | ';' | '<' | '>' | '\\')
            || (i == 0 && matches!(c, '#' | ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        if c == '\0' {
            out.push_str("\\00");
        } else {
            out.push(c);
        }
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn escapes_rfc4514_specials() {
        assert_eq!(escape("alice"), "alice");
        assert_eq!(escape("Example, Inc."), "Example\\, Inc.");
        assert_eq!(escape("#x "), "\\#x\\ ");
        assert_eq!(escape("a+b=c"), "a\\+b=c");
    }
}
