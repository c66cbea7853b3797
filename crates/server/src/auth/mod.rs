//! Who may open a WebSocket, and as whom: codex's `--ws-auth` modes with upstream's
//! semantics and refusal texts, and the [`Principal`] each accepted connection acts for.
//!
//! - capability token: the bearer's SHA-256 equals the configured digest (compared in
//!   constant time); `--token-file` is rexec's short form of `--ws-token-file`;
//! - signed bearer token: an HS256 JWT, see [`signed_bearer`].
//!
//! The credential travels as `Authorization: Bearer <token>` on the upgrade request (scheme
//! matched case-insensitively, the token trimmed). A verified client certificate (mTLS)
//! names the principal when there is one; a token is still required if a mode is set.

mod principal;
pub mod signed_bearer;

pub use principal::Principal;
pub use signed_bearer::SignedBearer;

use hyper::header::{AUTHORIZATION, HeaderMap};
use sha2::{Digest, Sha256};
use std::io;
use std::path::Path;

#[derive(Clone, Default)]
pub enum Authenticator {
    /// No token: anyone who reaches the listener (or passes mTLS) is let in.
    #[default]
    Open,
    CapabilityToken {
        digest: [u8; 32],
    },
    SignedBearer(Box<SignedBearer>),
}

impl Authenticator {
    /// A capability token given as the token itself.
    pub fn capability_token(token: &str) -> Self {
        Self::CapabilityToken {
            digest: sha256(token.as_bytes()),
        }
    }

    /// A capability token given as the hex SHA-256 of the token (`--ws-token-sha256`).
    pub fn capability_token_digest(hex: &str) -> Result<Self, String> {
        let hex = hex.trim();
        let invalid = || {
            format!(
                "--ws-token-sha256 must be 64 hex digits (a SHA-256 digest), got {} characters",
                hex.len()
            )
        };
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid());
        }
        let mut digest = [0u8; 32];
        for (byte, at) in digest.iter_mut().zip((0..64).step_by(2)) {
            *byte = u8::from_str_radix(&hex[at..at + 2], 16).map_err(|_| invalid())?;
        }
        Ok(Self::CapabilityToken { digest })
    }

    /// Whether a token is required.
    pub fn requires_token(&self) -> bool {
        !matches!(self, Self::Open)
    }

    /// The `--ws-auth` name of the mode, for logs.
    pub fn mode_name(&self) -> &'static str {
        match self {
            Self::Open => "none",
            Self::CapabilityToken { .. } => "capability-token",
            Self::SignedBearer(_) => "signed-bearer-token",
        }
    }

    /// The principal an upgrade request acts for, or upstream's reason for a 401.
    /// `client_certificate` is the subject of a client certificate the TLS layer verified.
    pub fn authorize(
        &self,
        headers: &HeaderMap,
        client_certificate: Option<&str>,
    ) -> Result<Principal, &'static str> {
        let from_token = match self {
            Self::Open => Principal::anonymous(),
            Self::CapabilityToken { digest } => {
                let presented = sha256(bearer_token(headers)?.as_bytes());
                if !constant_time_eq(&presented, digest) {
                    return Err("invalid websocket bearer token");
                }
                Principal::capability_token(digest)
            }
            Self::SignedBearer(verifier) => {
                let subject = verifier.verify(bearer_token(headers)?)?;
                Principal::signed_token(subject.as_deref())
            }
        };
        Ok(client_certificate.map_or(from_token, Principal::client_certificate))
    }
}

/// Names the mode only: the digest and the secret stay out of logs.
impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Authenticator({})", self.mode_name())
    }
}

/// The bearer token of an `Authorization` header, as upstream extracts it.
fn bearer_token(headers: &HeaderMap) -> Result<&str, &'static str> {
    const INVALID: &str = "invalid authorization header";
    let header = headers
        .get(AUTHORIZATION)
        .ok_or("missing websocket bearer token")?
        .to_str()
        .map_err(|_| INVALID)?;
    let (scheme, token) = header.split_once(' ').ok_or(INVALID)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(INVALID);
    }
    Ok(token)
}

/// A secret file's contents, trimmed; empty is an error (as upstream).
pub fn read_secret(path: &Path) -> io::Result<String> {
    let raw = std::fs::read_to_string(path).map_err(|err| {
        io::Error::new(
            err.kind(),
            format!("failed to read {}: {err}", path.display()),
        )
    })?;
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is empty", path.display()),
        ));
    }
    Ok(trimmed.to_owned())
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn with_authorization(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_str(value).expect("header"));
        headers
    }

    #[test]
    fn capability_tokens_as_upstream() {
        let auth = Authenticator::capability_token("s3cret");
        for good in ["Bearer s3cret", "bearer s3cret", "BEARER  s3cret "] {
            assert!(
                auth.authorize(&with_authorization(good), None).is_ok(),
                "{good}"
            );
        }
        let refusals = [
            ("Bearer s3cre", "invalid websocket bearer token"),
            ("Bearer s3cretx", "invalid websocket bearer token"),
            ("Basic s3cret", "invalid authorization header"),
            ("Bearers3cret", "invalid authorization header"),
            ("Bearer ", "invalid authorization header"),
        ];
        for (bad, reason) in refusals {
            assert_eq!(
                auth.authorize(&with_authorization(bad), None),
                Err(reason),
                "{bad}"
            );
        }
        assert_eq!(
            auth.authorize(&HeaderMap::new(), None),
            Err("missing websocket bearer token")
        );
    }

    #[test]
    fn a_digest_names_the_same_token() {
        // printf %s s3cret | sha256sum
        let hex = "1ec1c26b50d5d3c58d9583181af8076655fe00756bf7285940ba3670f99fcba0";
        let auth = Authenticator::capability_token_digest(hex).expect("hex");
        assert!(
            auth.authorize(&with_authorization("Bearer s3cret"), None)
                .is_ok()
        );
        assert!(
            auth.authorize(&with_authorization("Bearer s3cre"), None)
                .is_err()
        );
        assert!(Authenticator::capability_token_digest(&hex.to_uppercase()).is_ok());
        assert!(Authenticator::capability_token_digest("abc").is_err());
        assert!(Authenticator::capability_token_digest(&"zz".repeat(32)).is_err());
        // `from_str_radix` alone would take a sign: "+f" is not two hex digits.
        assert!(Authenticator::capability_token_digest(&"+f".repeat(32)).is_err());
    }

    #[test]
    fn a_client_certificate_names_the_principal() {
        let auth = Authenticator::Open;
        assert_eq!(
            auth.authorize(&HeaderMap::new(), Some("CN=alice")),
            Ok(Principal::client_certificate("CN=alice"))
        );
        assert_eq!(
            auth.authorize(&HeaderMap::new(), None),
            Ok(Principal::anonymous())
        );
    }
}
