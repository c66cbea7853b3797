//! HTTP side of the listener: `GET /readyz`, refusal of browser upgrades (`Origin` → 403),
//! and the bearer token on the WebSocket upgrade (401 without it, `/readyz` ungated).

use anyhow::{Result, ensure};

use crate::client::{Client, raw_http_status, upgrade_request};
use crate::harness::Ctx;
use crate::server::ServerOptions;

fn readyz_request(addr: std::net::SocketAddr) -> String {
    format!("GET /readyz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
}

async fn readyz_ok(ctx: Ctx) -> Result<()> {
    let server = ctx.server().await?;
    let status = raw_http_status(server.addr, &readyz_request(server.addr)).await?;
    ensure!(status == 200, "GET /readyz answered {status}");
    // The WebSocket endpoint works alongside it.
    let mut client = Client::connect(&server).await?;
    client.initialize().await?;
    client.ping().await
}
conformance_test!(readyz_ok);

async fn origin_upgrade_forbidden(ctx: Ctx) -> Result<()> {
    let server = ctx.server().await?;
    let request = upgrade_request(server.addr, &["Origin: http://evil.example"]);
    let status = raw_http_status(server.addr, &request).await?;
    ensure!(
        status == 403,
        "upgrade with an Origin header answered {status}"
    );
    let plain = raw_http_status(server.addr, &upgrade_request(server.addr, &[])).await?;
    ensure!(
        plain == 101,
        "the same upgrade without Origin answered {plain}"
    );
    Ok(())
}
conformance_test!(origin_upgrade_forbidden);

async fn token_gates_upgrade_only(ctx: Ctx) -> Result<()> {
    let token = "conformance-token-7f3a";
    let options = ServerOptions {
        token: Some(token.into()),
        ..Default::default()
    };
    let server = ctx.server_with(&options).await?;
    let addr = server.addr;
    let missing = raw_http_status(addr, &upgrade_request(addr, &[])).await?;
    ensure!(
        missing == 401,
        "upgrade without the token answered {missing}"
    );
    let wrong = raw_http_status(
        addr,
        &upgrade_request(addr, &["Authorization: Bearer nope"]),
    )
    .await?;
    ensure!(wrong == 401, "upgrade with a wrong token answered {wrong}");
    let ready = raw_http_status(addr, &readyz_request(addr)).await?;
    ensure!(ready == 200, "/readyz without the token answered {ready}");
    // `Client::connect` sends `Authorization: Bearer <token>`.
    let mut client = Client::connect(&server).await?;
    client.initialize().await?;
    client.ping().await
}
conformance_test!(token_gates_upgrade_only);

async fn server_sends_pings(ctx: Ctx) -> Result<()> {
    let options = ServerOptions {
        ping_interval_ms: Some(100),
        ..Default::default()
    };
    let server = ctx.server_with(&options).await?;
    let mut client = Client::connect(&server).await?;
    client.initialize().await?;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while client.pings < 2 && tokio::time::Instant::now() < deadline {
        let step = tokio::time::Instant::now() + std::time::Duration::from_millis(100);
        if let Some(unexpected) = client.next_notification(step).await? {
            anyhow::bail!("unexpected notification {unexpected}");
        }
    }
    ensure!(
        client.pings >= 2,
        "{} pings in 5 s with --ping-interval-ms 100",
        client.pings
    );
    // Pongs went back automatically and the connection is healthy.
    client.ping().await
}
conformance_test!(rexec_only("--ping-interval-ms") server_sends_pings);

/// RFC 7235: the auth scheme is case-insensitive; the token itself is exact.
async fn bearer_scheme_is_case_insensitive(ctx: Ctx) -> Result<()> {
    let token = "conformance-token-9c1d";
    let options = ServerOptions {
        token: Some(token.into()),
        ..Default::default()
    };
    let server = ctx.server_with(&options).await?;
    let addr = server.addr;
    for scheme in ["bearer", "BEARER"] {
        let header = format!("Authorization: {scheme} {token}");
        let status = raw_http_status(addr, &upgrade_request(addr, &[&header])).await?;
        ensure!(status == 101, "`{scheme}` scheme answered {status}");
    }
    let header = format!("Authorization: bearer {}", token.to_uppercase());
    let status = raw_http_status(addr, &upgrade_request(addr, &[&header])).await?;
    ensure!(status == 401, "a token in another case answered {status}");
    Ok(())
}
conformance_test!(rexec_only("RFC 7235 scheme matching") bearer_scheme_is_case_insensitive);

/// A browser request is refused everywhere, the health check included.
async fn readyz_with_origin_refused(ctx: Ctx) -> Result<()> {
    let server = ctx.server().await?;
    let addr = server.addr;
    let request = format!(
        "GET /readyz HTTP/1.1\r\nHost: {addr}\r\nOrigin: http://evil.example\r\nConnection: close\r\n\r\n"
    );
    let status = raw_http_status(addr, &request).await?;
    ensure!(
        status == 403,
        "/readyz with an Origin header answered {status}"
    );
    Ok(())
}
conformance_test!(rexec_only("Origin refused on every route") readyz_with_origin_refused);
