//! TLS for `wss://` endpoints: the rustls client configuration (the system's roots or a
//! private CA, an optional client certificate), the socket that is plain TCP or TLS over
//! it, and the one place where rustls's certificate errors become sentences that say what
//! did not match.
//!
//! Only the ring provider is used. The system roots are read once per process.

use crate::options::TlsOptions;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{AlertDescription, CertificateError, RootCertStore};
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// The client side of a `wss://` connection, built from `options`.
pub(crate) fn connector(options: &TlsOptions) -> Result<TlsConnector, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = match &options.ca_file {
        Some(path) => Arc::new(private_roots(path)?),
        None => system_roots(),
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| err.to_string())?
        .with_root_certificates(roots);
    let config = match (&options.client_cert, &options.client_key) {
        (None, None) => builder.with_no_client_auth(),
        (Some(cert), Some(key)) => {
            let chain = read_certificates(cert)?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|err| format!("cannot read the client key {}: {err}", key.display()))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|err| format!("the client certificate and key do not fit: {err}"))?
        }
        _ => return Err("a client certificate needs both its certificate and its key".to_owned()),
    };
    Ok(TlsConnector::from(Arc::new(config)))
}

fn private_roots(path: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for certificate in read_certificates(path)? {
        roots
            .add(certificate)
            .map_err(|err| format!("{} is not a usable CA certificate: {err}", path.display()))?;
    }
    Ok(roots)
}

/// The system's trusted roots. None found is not an error here: the handshake then fails
/// with an unknown issuer, which says what to do.
fn system_roots() -> Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            for err in &found.errors {
                tracing::debug!(%err, "reading the system's CA certificates");
            }
            let mut roots = RootCertStore::empty();
            let (added, ignored) = roots.add_parsable_certificates(found.certs);
            tracing::debug!(added, ignored, "system CA certificates");
            Arc::new(roots)
        })
        .clone()
}

fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certificates = CertificateDer::pem_file_iter(path)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|err| format!("cannot read {}: {err}", path.display()))?;
    if certificates.is_empty() {
        return Err(format!("{} holds no PEM certificate", path.display()));
    }
    Ok(certificates)
}

/// The server name a certificate must carry for `host` (a DNS name or an IP address).
pub(crate) fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(host.to_owned())
        .map_err(|_| format!("`{host}` is not a valid TLS server name"))
}

/// The TLS error inside an I/O error from a TLS stream, if that is what it is.
pub(crate) fn tls_error(err: &io::Error) -> Option<&rustls::Error> {
    err.get_ref()?.downcast_ref::<rustls::Error>()
}

/// What was wrong with a certificate in a TLS handshake with `host`, said so a person can
/// act on it; `None` when the failure was not about a certificate (a reset, a corrupt
/// record), which a retry may get past.
pub(crate) fn certificate_problem(err: &rustls::Error, host: &str) -> Option<String> {
    match err {
        rustls::Error::InvalidCertificate(err) => Some(describe_server_certificate(err, host)),
        rustls::Error::AlertReceived(alert) => describe_alert(*alert),
        rustls::Error::NoCertificatesPresented => {
            Some("the server presented no certificate".to_owned())
        }
        _ => None,
    }
}

fn describe_server_certificate(err: &CertificateError, host: &str) -> String {
    let what = "the server's certificate";
    match err {
        CertificateError::NotValidForNameContext {
            expected,
            presented,
        } => format!(
            "{what} is not valid for the name `{}`: it is for {}",
            expected.to_str(),
            if presented.is_empty() {
                "no name".to_owned()
            } else {
                presented
                    .iter()
                    .map(|name| plain_name(name))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        ),
        CertificateError::NotValidForName => {
            format!("{what} is not valid for the name `{host}`")
        }
        CertificateError::ExpiredContext { time, not_after } => format!(
            "{what} has expired: it was valid until {} ago",
            elapsed(*not_after, *time)
        ),
        CertificateError::Expired => format!("{what} has expired"),
        CertificateError::NotValidYetContext { time, not_before } => format!(
            "{what} is not valid yet: it becomes valid in {}",
            elapsed(*time, *not_before)
        ),
        CertificateError::NotValidYet => format!("{what} is not valid yet"),
        CertificateError::UnknownIssuer => format!(
            "{what} is issued by an unknown CA (not one this client trusts); \
             a private CA must be given as the CA file (--ca-file)"
        ),
        CertificateError::BadSignature => format!("{what} has a bad signature"),
        CertificateError::Revoked => format!("{what} is revoked"),
        other => format!("{what} was refused: {other}"),
    }
}

/// A presented name as webpki spells it (`DnsName("a.example")`, `IpAddress(10.0.0.1)`),
/// without the wrapping.
fn plain_name(name: &str) -> &str {
    let unwrapped = name
        .strip_prefix("DnsName(\"")
        .and_then(|rest| rest.strip_suffix("\")"))
        .or_else(|| name.strip_prefix("IpAddress(")?.strip_suffix(')'));
    unwrapped.unwrap_or(name)
}

fn describe_alert(alert: AlertDescription) -> Option<String> {
    let sentence = match alert {
        AlertDescription::CertificateRequired => "the server requires a client certificate \
             (--client-cert and --client-key)"
            .to_owned(),
        AlertDescription::UnknownCA => "the server refused the client certificate: it is not \
             issued by a CA the server trusts (unknown CA)"
            .to_owned(),
        AlertDescription::CertificateExpired => {
            "the server refused the client certificate: it has expired or is not valid yet"
                .to_owned()
        }
        AlertDescription::BadCertificate
        | AlertDescription::UnsupportedCertificate
        | AlertDescription::CertificateRevoked
        | AlertDescription::CertificateUnknown
        | AlertDescription::AccessDenied => {
            format!("the server refused the client certificate ({alert:?})")
        }
        _ => return None,
    };
    Some(sentence)
}

/// How long from `from` to `to`, in the largest whole unit ("3 days", "5 minutes").
fn elapsed(from: UnixTime, to: UnixTime) -> String {
    let seconds = to.as_secs().saturating_sub(from.as_secs());
    let (count, unit) = match Duration::from_secs(seconds).as_secs() {
        s if s >= 86_400 => (s / 86_400, "day"),
        s if s >= 3_600 => (s / 3_600, "hour"),
        s if s >= 60 => (s / 60, "minute"),
        s => (s, "second"),
    };
    let plural = if count == 1 { "" } else { "s" };
    format!("{count} {unit}{plural}")
}

/// A client socket: plain TCP (`ws://`) or TLS over TCP (`wss://`).
pub(crate) enum Socket {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            Self::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(tcp) => Pin::new(tcp).poll_write(cx, buf),
            Self::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            Self::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            Self::Tls(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presented_names_lose_their_wrapping() {
        assert_eq!(plain_name("DnsName(\"a.example\")"), "a.example");
        assert_eq!(plain_name("IpAddress(10.0.0.1)"), "10.0.0.1");
        assert_eq!(plain_name("DirectoryName"), "DirectoryName");
    }

    #[test]
    fn elapsed_uses_the_largest_whole_unit() {
        let at = |s| UnixTime::since_unix_epoch(Duration::from_secs(s));
        assert_eq!(elapsed(at(100), at(100)), "0 seconds");
        assert_eq!(elapsed(at(0), at(61)), "1 minute");
        assert_eq!(elapsed(at(0), at(3 * 86_400 + 5)), "3 days");
    }
}
