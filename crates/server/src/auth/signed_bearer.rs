//! `--ws-auth signed-bearer-token`: HS256 JWTs signed with a shared secret, checked as
//! upstream checks them.
//!
//! The signature must verify with HS256 (any other `alg`, `none` included, is refused);
//! `exp` is required; `nbf` is checked when present; both allow the configured clock skew
//! (default 30 s). `iss` and `aud` must match when the server is configured with an issuer
//! or an audience (`aud` may be a string or a list); otherwise they are not looked at.
//! `iat` is not checked. The shared secret is at least 32 bytes.

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use std::time::{SystemTime, UNIX_EPOCH};

/// Upstream's default `--ws-max-clock-skew-seconds`.
pub const DEFAULT_MAX_CLOCK_SKEW_SECONDS: u64 = 30;
/// Upstream's minimum shared-secret length.
pub const MIN_SHARED_SECRET_BYTES: usize = 32;

#[derive(Clone)]
pub struct SignedBearer {
    key: DecodingKey,
    validation: Validation,
    issuer: Option<String>,
    audience: Option<String>,
    max_clock_skew_seconds: i64,
}

#[derive(Deserialize)]
struct Claims {
    exp: i64,
    nbf: Option<i64>,
    iss: Option<String>,
    aud: Option<Audience>,
    sub: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl SignedBearer {
    /// `secret` is the shared secret as read from its file (already trimmed).
    pub fn new(
        secret: &[u8],
        issuer: Option<String>,
        audience: Option<String>,
        max_clock_skew_seconds: u64,
    ) -> Result<Self, String> {
        if secret.len() < MIN_SHARED_SECRET_BYTES {
            return Err(format!(
                "the shared secret must be at least {MIN_SHARED_SECRET_BYTES} bytes (it is {})",
                secret.len()
            ));
        }
        let max_clock_skew_seconds = i64::try_from(max_clock_skew_seconds)
            .map_err(|_| "the clock skew must fit in a signed 64-bit integer".to_owned())?;
        // Only the signature and the algorithm are left to the crate; the claims are
        // checked below, with upstream's rules and messages.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        Ok(Self {
            key: DecodingKey::from_secret(secret)
                .map_err(|err| format!("unusable shared secret: {err}"))?,
            validation,
            issuer,
            audience,
            max_clock_skew_seconds,
        })
    }

    /// The token's `sub`, if it is valid now; otherwise upstream's reason.
    pub fn verify(&self, token: &str) -> Result<Option<String>, &'static str> {
        let claims = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|_| "invalid websocket jwt")?
            .claims;
        self.check(&claims, unix_now())?;
        Ok(claims.sub)
    }

    fn check(&self, claims: &Claims, now: i64) -> Result<(), &'static str> {
        let skew = self.max_clock_skew_seconds;
        if now > claims.exp.saturating_add(skew) {
            return Err("expired websocket jwt");
        }
        if claims.nbf.is_some_and(|nbf| now < nbf.saturating_sub(skew)) {
            return Err("websocket jwt is not valid yet");
        }
        if let Some(issuer) = &self.issuer
            && claims.iss.as_ref() != Some(issuer)
        {
            return Err("websocket jwt issuer mismatch");
        }
        if let Some(audience) = &self.audience {
            let matches = match &claims.aud {
                Some(Audience::One(aud)) => aud == audience,
                Some(Audience::Many(auds)) => auds.contains(audience),
                None => false,
            };
            if !matches {
                return Err("websocket jwt audience mismatch");
            }
        }
        Ok(())
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::{Value, json};

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn sign(claims: &Value) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(SECRET).expect("key"),
        )
        .expect("sign")
    }

    fn verifier() -> SignedBearer {
        SignedBearer::new(
            SECRET,
            Some("iss-a".into()),
            Some("aud-a".into()),
            DEFAULT_MAX_CLOCK_SKEW_SECONDS,
        )
        .expect("verifier")
    }

    #[test]
    fn upstream_rules() {
        let now = unix_now();
        let good = json!({"iss": "iss-a", "aud": "aud-a", "exp": now + 60, "sub": "ci"});
        assert_eq!(verifier().verify(&sign(&good)), Ok(Some("ci".into())));
        let listed = json!({"iss": "iss-a", "aud": ["x", "aud-a"], "exp": now + 60});
        assert_eq!(verifier().verify(&sign(&listed)), Ok(None));
        let within_skew = json!({"iss": "iss-a", "aud": "aud-a", "exp": now - 10});
        assert!(verifier().verify(&sign(&within_skew)).is_ok());
        let cases = [
            (
                json!({"iss": "iss-a", "aud": "aud-a", "exp": now - 60}),
                "expired websocket jwt",
            ),
            (
                json!({"iss": "iss-a", "aud": "aud-a"}),
                "invalid websocket jwt",
            ),
            (
                json!({"iss": "iss-a", "aud": "aud-a", "exp": now + 60, "nbf": now + 60}),
                "websocket jwt is not valid yet",
            ),
            (
                json!({"iss": "iss-b", "aud": "aud-a", "exp": now + 60}),
                "websocket jwt issuer mismatch",
            ),
            (
                json!({"aud": "aud-a", "exp": now + 60}),
                "websocket jwt issuer mismatch",
            ),
            (
                json!({"iss": "iss-a", "aud": "aud-b", "exp": now + 60}),
                "websocket jwt audience mismatch",
            ),
        ];
        for (claims, reason) in cases {
            assert_eq!(verifier().verify(&sign(&claims)), Err(reason), "{claims}");
        }
    }

    #[test]
    fn only_hs256_with_the_secret() {
        let claims = json!({"iss": "iss-a", "aud": "aud-a", "exp": unix_now() + 60});
        let token = sign(&claims);
        let (body, signature) = token.rsplit_once('.').expect("three parts");
        let tampered = format!("{body}.{}x", &signature[..signature.len() - 1]);
        assert_eq!(verifier().verify(&tampered), Err("invalid websocket jwt"));
        let payload = body.split_once('.').expect("header.payload").1;
        // {"alg":"none","typ":"JWT"}
        let unsigned = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{payload}.");
        assert_eq!(verifier().verify(&unsigned), Err("invalid websocket jwt"));
        let hs512 = encode(
            &Header::new(Algorithm::HS512),
            &claims,
            &EncodingKey::from_secret(SECRET).expect("key"),
        )
        .expect("sign");
        assert_eq!(verifier().verify(&hs512), Err("invalid websocket jwt"));
    }

    #[test]
    fn a_short_secret_is_refused() {
        assert!(SignedBearer::new(b"short", None, None, 30).is_err());
    }
}
