//! `http/request` and `http/request/bodyDelta` against a loopback origin started by the
//! test ([`crate::http_origin`]): plain and streamed bodies, headers from the server's
//! environment (`valueEnvVar`), redirects, timeouts, upstream's error texts, stream ids,
//! proxy variables, and what closing the connection does to a stream.
//!
//! Both servers are given `NO_PROXY=127.0.0.1`, so a proxy in the test's environment does
//! not change what they reach; `proxy_variables_apply_to_loopback` checks what a proxy
//! variable does.

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};
use std::time::Duration;
use tokio::time::Instant;

use crate::client::{Client, Incoming};
use crate::harness::{Ctx, b64, check_error, encode};
use crate::http_origin::{BIG_LEN, GZIPPED, Origin, big_body};
use crate::server::{Server, ServerOptions, Target};

/// The secret the servers' environment holds for `valueEnvVar`.
const SECRET_VAR: &str = "REXEC_CONFORMANCE_HTTP_SECRET";
const SECRET: &str = "s3cret-value";
/// A variable the servers' environment holds, empty.
const EMPTY_VAR: &str = "REXEC_CONFORMANCE_HTTP_EMPTY";
/// Largest body slice of one delta.
const MAX_DELTA: usize = 1024 * 1024;

fn options(extra: &[(&'static str, &str)]) -> ServerOptions {
    let mut both_env = vec![
        (SECRET_VAR, SECRET.to_owned()),
        (EMPTY_VAR, String::new()),
        ("NO_PROXY", "127.0.0.1".to_owned()),
        ("no_proxy", "127.0.0.1".to_owned()),
    ];
    for (name, value) in extra {
        both_env.retain(|(n, _)| n != name);
        both_env.push((name, (*value).to_owned()));
    }
    ServerOptions {
        both_env,
        ..ServerOptions::default()
    }
}

async fn setup(ctx: &Ctx, extra: &[(&'static str, &str)]) -> Result<(Origin, Server, Client)> {
    let origin = Origin::start().await?;
    let server = ctx.server_with(&options(extra)).await?;
    let mut client = Client::connect(&server).await?;
    client.initialize().await?;
    Ok((origin, server, client))
}

fn get(url: String, request_id: &str) -> Value {
    json!({"method": "GET", "url": url, "headers": [], "requestId": request_id})
}

fn header<'a>(result: &'a Value, name: &str) -> Option<&'a str> {
    result["headers"]
        .as_array()?
        .iter()
        .find(|h| h["name"] == name)
        .and_then(|h| h["value"].as_str())
}

/// A streamed request: its result and its deltas through the one with `done: true`.
/// Fails if a delta of the stream arrives before the response.
async fn streamed(client: &mut Client, params: Value) -> Result<(Value, Vec<Value>)> {
    let request_id = params["requestId"].clone();
    let id = client.send_request("http/request", params).await?;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut result = None;
    let mut deltas = Vec::new();
    loop {
        let value = match client.recv_until(deadline).await? {
            Some(Incoming::Json(value)) => value,
            Some(Incoming::Closed(why)) => bail!("connection closed ({why})"),
            None => bail!("the stream did not end: {} deltas", deltas.len()),
        };
        if value["id"] == json!(id) {
            if let Some(error) = value.get("error") {
                bail!("http/request failed: {error}");
            }
            result = Some(value["result"].clone());
        } else if value["method"] == "http/request/bodyDelta"
            && value["params"]["requestId"] == request_id
        {
            ensure!(
                result.is_some(),
                "a bodyDelta came before the response: {value}"
            );
            let done = value["params"]["done"] == true;
            deltas.push(value["params"].clone());
            if done {
                return Ok((result.unwrap_or_default(), deltas));
            }
        } else {
            client.dispatch(value);
        }
    }
}

/// Checks the stream's shape (1-based contiguous seqs, slices of at most 1 MiB, `done`
/// only last) and returns the body.
fn stream_body(deltas: &[Value]) -> Result<Vec<u8>> {
    let mut body = Vec::new();
    for (i, delta) in deltas.iter().enumerate() {
        ensure!(delta["seq"] == json!(i + 1), "seq {} at {i}", delta["seq"]);
        let last = i + 1 == deltas.len();
        ensure!(
            delta["done"] == json!(last),
            "done {} at {i}",
            delta["done"]
        );
        let bytes = b64(&delta["deltaBase64"])?;
        ensure!(bytes.len() <= MAX_DELTA, "a delta of {} bytes", bytes.len());
        body.extend_from_slice(&bytes);
    }
    Ok(body)
}

async fn plain_requests(ctx: Ctx) -> Result<()> {
    let (origin, _server, mut client) = setup(&ctx, &[]).await?;
    let result = client
        .call("http/request", get(origin.url("/hello"), "r1"))
        .await?;
    ensure!(result["status"] == 200, "{result}");
    ensure!(b64(&result["bodyBase64"])? == b"hello-body\n", "{result}");
    ensure!(header(&result, "x-origin") == Some("test"), "{result}");
    ensure!(header(&result, "content-length") == Some("11"), "{result}");

    let missing = client
        .call("http/request", get(origin.url("/missing"), "r2"))
        .await?;
    ensure!(missing["status"] == 404, "a 404 is a result: {missing}");
    ensure!(b64(&missing["bodyBase64"])? == b"not here");

    let posted = client
        .call(
            "http/request",
            json!({"method": "POST", "url": origin.url("/echo"), "requestId": "r3",
                   "headers": [{"name": "content-type", "value": "text/plain"}],
                   "bodyBase64": encode(b"posted body")}),
        )
        .await?;
    let echoed = String::from_utf8(b64(&posted["bodyBase64"])?)?;
    ensure!(echoed.starts_with("POST /echo HTTP/1.1\r\n"), "{echoed}");
    ensure!(echoed.contains("content-type: text/plain\r\n"), "{echoed}");
    ensure!(echoed.ends_with("\r\n\r\nposted body"), "{echoed}");

    // A plain request may carry the id of another plain one: ids matter for streams.
    let again = client
        .call("http/request", get(origin.url("/big"), "r1"))
        .await?;
    ensure!(
        b64(&again["bodyBase64"])? == big_body(),
        "the 3 MiB body, whole"
    );
    Ok(())
}
conformance_test!(plain_requests);

async fn streamed_bodies(ctx: Ctx) -> Result<()> {
    let (origin, _server, mut client) = setup(&ctx, &[]).await?;
    let mut params = get(origin.url("/big"), "big");
    params["streamResponse"] = json!(true);
    let (result, deltas) = streamed(&mut client, params).await?;
    ensure!(result["status"] == 200, "{result}");
    ensure!(
        result["bodyBase64"] == "",
        "a streamed result has no body: {result}"
    );
    let body = stream_body(&deltas)?;
    ensure!(
        body.len() == BIG_LEN && body == big_body(),
        "{} bytes",
        body.len()
    );
    ensure!(
        deltas.len() >= 5,
        "{BIG_LEN} bytes in {} deltas",
        deltas.len()
    );
    let last = deltas.last().context("no delta")?;
    ensure!(
        last["error"].is_null() && b64(&last["deltaBase64"])?.is_empty(),
        "{last}"
    );

    // A body that breaks off ends the stream with an error, after what did arrive.
    let mut params = get(origin.url("/broken"), "broken");
    params["streamResponse"] = json!(true);
    let (_, deltas) = streamed(&mut client, params).await?;
    ensure!(stream_body(&deltas)? == b"0123456789", "{deltas:?}");
    let last = deltas.last().context("no delta")?;
    ensure!(
        last["error"].is_string(),
        "the last delta names the error: {last}"
    );

    // Streaming without an id is refused as a missing field.
    let mut params = get(origin.url("/hello"), "x");
    params
        .as_object_mut()
        .context("params")?
        .remove("requestId");
    params["streamResponse"] = json!(true);
    let error = client.expect_error("http/request", params).await?;
    check_error(&error, -32602, "missing field `requestId`")
}
conformance_test!(streamed_bodies);

async fn headers_from_the_environment(ctx: Ctx) -> Result<()> {
    let (origin, _server, mut client) = setup(&ctx, &[]).await?;
    let capabilities = &client.call("environment/info", json!({})).await?["capabilities"];
    ensure!(capabilities["httpHeaderEnvVars"] == true, "{capabilities}");
    let mut params = get(origin.url("/echo"), "h1");
    params["headers"] = json!([
        {"name": "authorization", "value": "Bearer ", "valueEnvVar": SECRET_VAR},
        {"name": "x-repeated", "value": "one"},
        {"name": "x-repeated", "value": "two"},
    ]);
    let echoed = String::from_utf8(b64(
        &client.call("http/request", params).await?["bodyBase64"],
    )?)?;
    ensure!(
        echoed.contains(&format!("authorization: Bearer {SECRET}\r\n")),
        "{echoed}"
    );
    ensure!(
        echoed.contains("x-repeated: one\r\n") && echoed.contains("x-repeated: two\r\n"),
        "{echoed}"
    );

    let mut params = get(origin.url("/echo"), "h2");
    params["headers"] =
        json!([{"name": "x-a", "value": "", "valueEnvVar": "REXEC_CONFORMANCE_UNSET"}]);
    let error = client.expect_error("http/request", params).await?;
    check_error(
        &error,
        -32602,
        "http/request header x-a requires executor environment variable REXEC_CONFORMANCE_UNSET",
    )?;
    let mut params = get(origin.url("/echo"), "h2e");
    params["headers"] = json!([{"name": "x-a", "value": "v", "valueEnvVar": EMPTY_VAR}]);
    let error = client.expect_error("http/request", params).await?;
    let empty = format!(
        "http/request header x-a requires a non-empty executor environment variable {EMPTY_VAR}"
    );
    check_error(&error, -32602, &empty)?;
    let mut params = get(origin.url("/echo"), "h3");
    params["headers"] = json!([{"name": "bad name", "value": "v"}]);
    let error = client.expect_error("http/request", params).await?;
    check_error(
        &error,
        -32602,
        "http/request header name is invalid: invalid HTTP header name",
    )?;
    let mut params = get(origin.url("/echo"), "h4");
    params["headers"] = json!([{"name": "x", "value": "a\nb"}]);
    let error = client.expect_error("http/request", params).await?;
    check_error(
        &error,
        -32602,
        "http/request header value is invalid for x: failed to parse header value",
    )
}
conformance_test!(headers_from_the_environment);

async fn redirects_and_timeouts(ctx: Ctx) -> Result<()> {
    let (origin, _server, mut client) = setup(&ctx, &[]).await?;
    let followed = client
        .call("http/request", get(origin.url("/redirect"), "f"))
        .await?;
    ensure!(followed["status"] == 200, "followed by default: {followed}");
    ensure!(b64(&followed["bodyBase64"])? == b"hello-body\n");
    let mut params = get(origin.url("/redirect"), "s");
    params["redirectPolicy"] = json!("stop");
    let stopped = client.call("http/request", params).await?;
    ensure!(stopped["status"] == 302, "{stopped}");
    ensure!(header(&stopped, "location") == Some("/hello"), "{stopped}");
    let mut params = get(origin.url("/redirect"), "b");
    params["redirectPolicy"] = json!("bogus");
    let error = client.expect_error("http/request", params).await?;
    check_error(
        &error,
        -32602,
        "unknown variant `bogus`, expected `follow` or `stop`",
    )?;

    let started = Instant::now();
    let mut params = get(origin.url("/slow"), "t");
    params["timeoutMs"] = json!(300);
    let error = client.expect_error("http/request", params).await?;
    let url = origin.url("/slow");
    check_error(
        &error,
        -32603,
        &format!("http/request failed: error sending request for url ({url})"),
    )?;
    ensure!(
        started.elapsed() < Duration::from_secs(5),
        "the timeout took {:?}",
        started.elapsed()
    );
    let mut params = get(origin.url("/hello"), "z");
    params["timeoutMs"] = json!(0);
    let error = client.expect_error("http/request", params).await?;
    check_error(
        &error,
        -32603,
        "http/request failed: route-aware request timed out",
    )?;
    // No deadline at all: absent or null.
    let mut params = get(origin.url("/hello"), "n");
    params["timeoutMs"] = Value::Null;
    ensure!(client.call("http/request", params).await?["status"] == 200);
    Ok(())
}
conformance_test!(redirects_and_timeouts);

async fn refusals(ctx: Ctx) -> Result<()> {
    let (origin, _server, mut client) = setup(&ctx, &[]).await?;
    let cases = [
        (
            get("ftp://127.0.0.1/x".into(), "a"),
            -32602,
            "http/request only supports http and https URLs, got ftp".to_owned(),
        ),
        (
            get("/relative".into(), "a"),
            -32602,
            "http/request url is invalid: relative URL without a base".to_owned(),
        ),
        (
            json!({"method": "G ET", "url": origin.url("/hello"), "requestId": "a"}),
            -32602,
            "http/request method is invalid: invalid HTTP method".to_owned(),
        ),
        (
            json!({"method": "GET", "url": origin.url("/hello")}),
            -32602,
            "missing field `requestId`".to_owned(),
        ),
        (
            get("http://127.0.0.1:1/".into(), "a"),
            -32603,
            "http/request failed: error sending request for url (http://127.0.0.1:1/)".to_owned(),
        ),
    ];
    for (params, code, text) in cases {
        let error = client.expect_error("http/request", params.clone()).await?;
        check_error(&error, code, &text).with_context(|| format!("{params}"))?;
    }
    Ok(())
}
conformance_test!(refusals);

async fn stream_ids(ctx: Ctx) -> Result<()> {
    let (origin, _server, mut client) = setup(&ctx, &[]).await?;
    let mut hold = get(origin.url("/hold"), "dup");
    hold["streamResponse"] = json!(true);
    let held = client.call("http/request", hold.clone()).await?;
    ensure!(held["status"] == 200, "{held}");
    let error = client.expect_error("http/request", hold.clone()).await?;
    check_error(
        &error,
        -32602,
        "http/request streamResponse requestId `dup` is already active",
    )?;
    // A plain request with that id is not a stream: it runs.
    let plain = client
        .call("http/request", get(origin.url("/hello"), "dup"))
        .await?;
    ensure!(plain["status"] == 200, "{plain}");

    origin.release();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut body = Vec::new();
    loop {
        let delta = client
            .next_notification(deadline)
            .await?
            .context("the held stream did not end")?;
        ensure!(delta["method"] == "http/request/bodyDelta", "{delta}");
        body.extend(b64(&delta["params"]["deltaBase64"])?);
        if delta["params"]["done"] == true {
            break;
        }
    }
    ensure!(
        body == b"first-last",
        "{:?}",
        String::from_utf8_lossy(&body)
    );
    // Ended: the id is free again.
    let mut hello = get(origin.url("/hello"), "dup");
    hello["streamResponse"] = json!(true);
    let (_, deltas) = streamed(&mut client, hello).await?;
    ensure!(stream_body(&deltas)? == b"hello-body\n");
    Ok(())
}
conformance_test!(stream_ids);

/// A stream belongs to its connection: closing the connection hangs up on the origin.
async fn streams_end_with_the_connection(ctx: Ctx) -> Result<()> {
    let (origin, server, mut client) = setup(&ctx, &[]).await?;
    let mut hold = get(origin.url("/hold"), "held");
    hold["streamResponse"] = json!(true);
    client.call("http/request", hold).await?;
    let first = client
        .next_notification(Instant::now() + Duration::from_secs(10))
        .await?
        .context("no first delta")?;
    ensure!(b64(&first["params"]["deltaBase64"])? == b"first", "{first}");
    client.close().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    ensure!(
        origin.hung_up_on(deadline).await,
        "the origin's connection stayed open after the client left"
    );
    drop(server);
    Ok(())
}
conformance_test!(streams_end_with_the_connection);

/// As upstream, proxy variables apply to loopback URLs too; `NO_PROXY` exempts a host.
async fn proxy_variables_apply_to_loopback(ctx: Ctx) -> Result<()> {
    let dead_proxy = "http://127.0.0.1:9";
    let (origin, _server, mut client) = setup(
        &ctx,
        &[
            ("HTTP_PROXY", dead_proxy),
            ("http_proxy", dead_proxy),
            ("NO_PROXY", ""),
            ("no_proxy", ""),
        ],
    )
    .await?;
    let url = origin.url("/hello");
    let error = client
        .expect_error("http/request", get(url.clone(), "p"))
        .await?;
    check_error(
        &error,
        -32603,
        &format!("http/request failed: error sending request for url ({url})"),
    )?;

    let (origin, _server, mut client) = setup(
        &ctx,
        &[("HTTP_PROXY", dead_proxy), ("http_proxy", dead_proxy)],
    )
    .await?;
    let result = client
        .call("http/request", get(origin.url("/hello"), "p"))
        .await?;
    ensure!(
        result["status"] == 200,
        "NO_PROXY=127.0.0.1 reaches the origin: {result}"
    );
    Ok(())
}
conformance_test!(proxy_variables_apply_to_loopback);

/// At most 16 requests in flight per connection; the next is refused at once.
async fn requests_in_flight_are_bounded(ctx: Ctx) -> Result<()> {
    let (origin, _server, mut client) = setup(&ctx, &[]).await?;
    for i in 0..16 {
        let mut hold = get(origin.url("/hold"), &format!("h{i}"));
        hold["streamResponse"] = json!(true);
        client.call("http/request", hold).await?;
    }
    let error = client
        .expect_error("http/request", get(origin.url("/hello"), "one-more"))
        .await?;
    check_error(
        &error,
        -32011,
        "too many http/request requests in flight on this connection (limit 16)",
    )?;
    origin.release();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut done = 0;
    while done < 16 {
        let delta = client
            .next_notification(deadline)
            .await?
            .context("streams did not end")?;
        if delta["params"]["done"] == true {
            done += 1;
        }
    }
    let result = client
        .call("http/request", get(origin.url("/hello"), "after"))
        .await?;
    ensure!(
        result["status"] == 200,
        "places are back once the streams end: {result}"
    );
    Ok(())
}
conformance_test!(rexec_only("per-connection bound on http/request") requests_in_flight_are_bounded);

/// codex 0.171 asks for compressed bodies (`accept-encoding: zstd,gzip`) and decodes them,
/// dropping `content-encoding` and `content-length`; 0.169 asks for none and returns a
/// compressed body as it came. rexec does what 0.171 does.
async fn compressed_bodies(ctx: Ctx) -> Result<()> {
    let (origin, _server, mut client) = setup(&ctx, &[]).await?;
    let info = client.call("environment/info", json!({})).await?;
    let decodes = !(ctx.target == Target::Codex && info["executorVersion"] == "0.169.0");
    let echoed = client
        .call("http/request", get(origin.url("/echo"), "e"))
        .await?;
    let echoed = String::from_utf8(b64(&echoed["bodyBase64"])?)?;
    let asks = echoed.contains("accept-encoding: zstd,gzip\r\n");
    ensure!(asks == decodes, "decodes {decodes}, request head: {echoed}");
    let result = client
        .call("http/request", get(origin.url("/gzip"), "g"))
        .await?;
    let body = b64(&result["bodyBase64"])?;
    if decodes {
        ensure!(body == b"zipped-body", "{result}");
        ensure!(header(&result, "content-encoding").is_none(), "{result}");
    } else {
        ensure!(body == GZIPPED, "{result}");
        ensure!(
            header(&result, "content-encoding") == Some("gzip"),
            "{result}"
        );
    }
    Ok(())
}
conformance_test!(compressed_bodies);
