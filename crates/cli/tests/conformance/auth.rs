//! codex's `--ws-auth` modes, the same flags given to both servers: the same capability
//! token and the same signed bearer tokens are accepted by both and refused by both when
//! wrong. And rexec's own rule on top: a session belongs to the principal that made it.

use anyhow::{Context, Result, bail, ensure};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

use crate::client::{Client, raw_http_status, upgrade_request};
use crate::harness::Ctx;
use crate::server::{ScratchDir, ServerOptions};

const SECRET: &str = "conformance-shared-secret-0123456789abcdef";
const ISSUER: &str = "https://issuer.example";
const AUDIENCE: &str = "rexec-conformance";
/// Given as `--ws-max-clock-skew-seconds`, so the skew tests exercise the flag.
const SKEW: i64 = 60;

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn sign_with(algorithm: Algorithm, secret: &str, claims: &Value) -> Result<String> {
    let key = EncodingKey::from_secret(secret.as_bytes()).context("signing key")?;
    jsonwebtoken::encode(&Header::new(algorithm), claims, &key).context("signing")
}

fn sign(claims: &Value) -> Result<String> {
    sign_with(Algorithm::HS256, SECRET, claims)
}

/// The status of an upgrade request carrying `authorization` (or no such header).
async fn upgrade_status(addr: SocketAddr, authorization: Option<&str>) -> Result<u16> {
    let header = authorization.map(|value| format!("Authorization: {value}"));
    let headers: Vec<&str> = header.iter().map(String::as_str).collect();
    raw_http_status(addr, &upgrade_request(addr, &headers)).await
}

/// Flags for a signed-bearer-token server whose secret lives in `scratch`.
fn signed_bearer_options(scratch: &ScratchDir) -> Result<ServerOptions> {
    let secret = scratch.path().join("jwt-secret");
    std::fs::write(&secret, format!("{SECRET}\n")).context("writing the shared secret")?;
    let args = [
        "--ws-auth",
        "signed-bearer-token",
        "--ws-shared-secret-file",
        &secret.display().to_string(),
        "--ws-issuer",
        ISSUER,
        "--ws-audience",
        AUDIENCE,
        "--ws-max-clock-skew-seconds",
        &SKEW.to_string(),
    ];
    Ok(ServerOptions {
        args: args.iter().map(|arg| arg.to_string()).collect(),
        ..Default::default()
    })
}

/// `--ws-auth capability-token --ws-token-sha256 HEX`: the token whose digest it is, with
/// the scheme in any case, is let in; a wrong, shortened or missing token gets 401.
async fn capability_token_by_digest(ctx: Ctx) -> Result<()> {
    let token = "conformance-capability-4b7e";
    let digest: String = Sha256::digest(token.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    let options = ServerOptions {
        args: [
            "--ws-auth",
            "capability-token",
            "--ws-token-sha256",
            &digest,
        ]
        .iter()
        .map(|arg| arg.to_string())
        .collect(),
        ..Default::default()
    };
    let server = ctx.server_with(&options).await?;
    let addr = server.addr;
    for good in [format!("Bearer {token}"), format!("bearer {token}")] {
        let status = upgrade_status(addr, Some(&good)).await?;
        ensure!(status == 101, "`{good}` answered {status}");
    }
    let shortened = format!("Bearer {}", &token[..token.len() - 1]);
    for bad in [Some("Bearer wrong-token"), Some(shortened.as_str()), None] {
        let status = upgrade_status(addr, bad).await?;
        ensure!(status == 401, "{bad:?} answered {status}, not 401");
    }
    Ok(())
}
conformance_test!(capability_token_by_digest);

/// `--ws-auth signed-bearer-token`: HS256 with the shared secret, `exp` required, `iss`
/// and `aud` as configured, `exp`/`nbf` within the configured skew.
async fn signed_bearer_tokens(ctx: Ctx) -> Result<()> {
    let scratch = ScratchDir::new("jwt")?;
    let server = ctx.server_with(&signed_bearer_options(&scratch)?).await?;
    let addr = server.addr;
    let t = now();
    let claims = |extra: Value| {
        let mut claims = json!({"iss": ISSUER, "aud": AUDIENCE, "exp": t + 300, "sub": "ci"});
        if let (Some(claims), Some(extra)) = (claims.as_object_mut(), extra.as_object()) {
            for (key, value) in extra {
                if value.is_null() {
                    claims.remove(key);
                } else {
                    claims.insert(key.clone(), value.clone());
                }
            }
        }
        claims
    };
    let accepted = [
        ("valid", sign(&claims(json!({})))?),
        (
            "audience in a list",
            sign(&claims(json!({"aud": ["other", AUDIENCE]})))?,
        ),
        (
            "expired within the skew",
            sign(&claims(json!({"exp": t - SKEW / 2})))?,
        ),
        (
            "not yet valid within the skew",
            sign(&claims(json!({"nbf": t + SKEW / 2})))?,
        ),
        ("without sub", sign(&claims(json!({"sub": null})))?),
    ];
    for (what, token) in &accepted {
        let status = upgrade_status(addr, Some(&format!("Bearer {token}"))).await?;
        ensure!(status == 101, "a {what} token answered {status}");
    }
    let valid = sign(&claims(json!({})))?;
    let (unsigned, _) = valid.rsplit_once('.').context("a JWT has three parts")?;
    let payload = unsigned.split_once('.').context("header.payload")?.1;
    let refused = [
        ("expired", sign(&claims(json!({"exp": t - 3 * SKEW})))?),
        (
            "not yet valid",
            sign(&claims(json!({"nbf": t + 3 * SKEW})))?,
        ),
        (
            "wrong audience",
            sign(&claims(json!({"aud": "someone-else"})))?,
        ),
        (
            "wrong issuer",
            sign(&claims(json!({"iss": "https://evil.example"})))?,
        ),
        ("without exp", sign(&claims(json!({"exp": null})))?),
        (
            "signed with another secret",
            sign_with(
                Algorithm::HS256,
                "another-secret-of-enough-length-0123456789",
                &claims(json!({})),
            )?,
        ),
        ("tampered", format!("{unsigned}.{}", "A".repeat(43))),
        // {"alg":"none","typ":"JWT"}
        (
            "alg none",
            format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{payload}."),
        ),
        (
            "HS512",
            sign_with(Algorithm::HS512, SECRET, &claims(json!({})))?,
        ),
    ];
    for (what, token) in &refused {
        let status = upgrade_status(addr, Some(&format!("Bearer {token}"))).await?;
        ensure!(status == 401, "a {what} token answered {status}, not 401");
    }
    let status = upgrade_status(addr, None).await?;
    ensure!(status == 401, "no token answered {status}, not 401");
    Ok(())
}
conformance_test!(signed_bearer_tokens);

/// The status and body of the reply to an upgrade request carrying `authorization`.
async fn upgrade_reply(addr: SocketAddr, authorization: Option<&str>) -> Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let header = authorization.map(|value| format!("Authorization: {value}"));
    let headers: Vec<&str> = header.iter().map(String::as_str).collect();
    let work = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream
            .write_all(upgrade_request(addr, &headers).as_bytes())
            .await?;
        let mut reply = Vec::new();
        let mut buf = [0u8; 1024];
        // A refusal is small and has a content-length; read until it is all in.
        loop {
            let text = String::from_utf8_lossy(&reply).into_owned();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length = head
                    .lines()
                    .find_map(|line| {
                        let (name, value) = line.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length")
                            .then(|| value.trim().parse::<usize>().ok())?
                    })
                    .unwrap_or(0);
                if body.len() >= length {
                    let status = head.split_whitespace().nth(1).context("status")?.parse()?;
                    return Ok((status, body.to_owned()));
                }
            }
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                bail!("connection closed mid-reply: {text:?}");
            }
            reply.extend_from_slice(&buf[..n]);
        }
    };
    tokio::time::timeout(Duration::from_secs(10), work)
        .await
        .context("no reply to the upgrade request within 10 s")?
}

/// `--ws-auth capability-token --ws-token-file FILE`: the file's token (trailing newline
/// trimmed) is let in, and each refusal is a 401 whose body is upstream's reason.
async fn token_file_and_refusal_reasons(ctx: Ctx) -> Result<()> {
    let scratch = ScratchDir::new("token-file")?;
    let file = scratch.path().join("token");
    std::fs::write(&file, "conformance-file-token-91c2\n")?;
    let options = ServerOptions {
        args: ["--ws-auth", "capability-token", "--ws-token-file"]
            .iter()
            .map(|arg| arg.to_string())
            .chain([file.display().to_string()])
            .collect(),
        ..Default::default()
    };
    let server = ctx.server_with(&options).await?;
    let addr = server.addr;
    let (status, _) = upgrade_reply(addr, Some("Bearer conformance-file-token-91c2")).await?;
    ensure!(status == 101, "the file's token answered {status}");
    for (authorization, reason) in [
        (None, "missing websocket bearer token"),
        (Some("Bearer wrong"), "invalid websocket bearer token"),
        (
            Some("Basic conformance-file-token-91c2"),
            "invalid authorization header",
        ),
    ] {
        let (status, body) = upgrade_reply(addr, authorization).await?;
        ensure!(
            (status, body.trim()) == (401, reason),
            "{authorization:?} answered {status} {body:?}, not 401 {reason:?}"
        );
    }
    Ok(())
}
conformance_test!(token_file_and_refusal_reasons);

/// A session made under one JWT `sub` cannot be resumed under another (-32600), even with
/// its id; a fresh token for the same `sub` resumes it.
async fn session_belongs_to_its_principal(ctx: Ctx) -> Result<()> {
    let scratch = ScratchDir::new("jwt")?;
    let server = ctx.server_with(&signed_bearer_options(&scratch)?).await?;
    let token_for = |sub: &str, exp: i64| {
        sign(&json!({"iss": ISSUER, "aud": AUDIENCE, "exp": exp, "sub": sub}))
    };
    let connect = |token: String| {
        let url = server.url.clone();
        async move {
            Client::connect_with_headers(
                &url,
                &[("Authorization".to_string(), format!("Bearer {token}"))],
            )
            .await
        }
    };
    let mut alice = connect(token_for("alice", now() + 300)?).await?;
    let session = alice.initialize().await?["sessionId"]
        .as_str()
        .context("sessionId")?
        .to_owned();
    alice.close().await;

    let mut bob = connect(token_for("bob", now() + 300)?).await?;
    let refused = bob
        .initialize_with(json!({"clientName": "bob", "resumeSessionId": session}))
        .await?;
    match refused {
        Err(error) if error.code == -32600 => ensure!(
            error.message.contains("belongs to another client"),
            "the refusal should say why: {error}"
        ),
        other => bail!("bob resumed alice's session: {other:?}"),
    }

    // Another token for alice (a later exp: a different JWT, the same principal). Her
    // first connection may not have detached yet: -32010 until it has, as for any resume.
    let deadline = Instant::now() + Duration::from_secs(5);
    let resumed = loop {
        let mut alice_again = connect(token_for("alice", now() + 600)?).await?;
        match alice_again
            .initialize_with(json!({"clientName": "alice", "resumeSessionId": session}))
            .await?
        {
            Ok(resumed) => break resumed,
            Err(error) if error.code == -32010 && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(error) => bail!("alice could not resume her own session: {error}"),
        }
    };
    ensure!(
        resumed["sessionId"] == json!(session),
        "resumed a different session: {resumed}"
    );
    Ok(())
}
conformance_test!(rexec_only("sessions belong to principals") session_belongs_to_its_principal);
