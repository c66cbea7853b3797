//! Who a connection acts for. Sessions belong to the principal that created them, so a
//! leaked session id alone does not hand its processes and output to someone else.
//!
//! A principal names the credential, never reveals it: a capability token by a prefix of
//! its SHA-256 digest, a signed token by its `sub` claim, a client certificate by its
//! subject.

use std::fmt;
use std::sync::Arc;

/// Hex digits of a token's digest that name it.
const TOKEN_DIGEST_PREFIX: usize = 12;

#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Principal(Arc<str>);

impl Principal {
    /// Anyone who can reach an unauthenticated listener.
    pub fn anonymous() -> Self {
        Self::from("anonymous")
    }

    /// The process on the other end of `--listen stdio` (whoever started the server).
    pub fn stdio() -> Self {
        Self::from("stdio")
    }

    /// Holders of the capability token with this SHA-256 digest.
    pub fn capability_token(digest: &[u8; 32]) -> Self {
        let hex: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
        Self::from(format!("token:{}", &hex[..TOKEN_DIGEST_PREFIX]).as_str())
    }

    /// The subject of a verified signed bearer token; tokens without `sub` share one.
    pub fn signed_token(subject: Option<&str>) -> Self {
        Self::from(format!("jwt:{}", subject.unwrap_or("-")).as_str())
    }

    /// The subject of a verified client certificate (mTLS).
    pub fn client_certificate(subject: &str) -> Self {
        Self::from(format!("cert:{subject}").as_str())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Principal {
    fn from(name: &str) -> Self {
        Self(Arc::from(name))
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Principal({})", self.0)
    }
}
