//! The HTTP client side of `http/request`: checking the request the way upstream does
//! (method, absolute http/https URL, headers with `valueEnvVar`), sending it with reqwest
//! over rustls, and turning the response head into the wire shape.
//!
//! Two clients are built once per server, one that follows redirects and one that stops at
//! them; a request's `timeoutMs` is set on the request itself. As codex 0.171, they ask for
//! `zstd,gzip` bodies and decode them. Proxy variables of the
//! server's environment (`HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY`, `NO_PROXY`) apply as
//! they do upstream, loopback URLs included.

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, Url, redirect};
use rexec_protocol::RpcError;
use rexec_protocol::http::{HttpHeader, HttpRedirectPolicy, HttpRequestParams};
use std::sync::OnceLock;
use std::time::Duration;

/// A request that passed every check, ready to send.
pub struct Checked {
    request: reqwest::RequestBuilder,
    /// `timeoutMs: 0`: the deadline has passed before anything is sent.
    expired: bool,
}

/// Check `params` and build the request; -32602 with upstream's text when it is malformed.
pub fn check(params: &mut HttpRequestParams) -> Result<Checked, RpcError> {
    let method = Method::from_bytes(params.method.as_bytes()).map_err(|err| {
        RpcError::invalid_params(format!("http/request method is invalid: {err}"))
    })?;
    let url = Url::parse(&params.url)
        .map_err(|err| RpcError::invalid_params(format!("http/request url is invalid: {err}")))?;
    match url.scheme() {
        "http" | "https" => {}
        scheme => {
            return Err(RpcError::invalid_params(format!(
                "http/request only supports http and https URLs, got {scheme}"
            )));
        }
    }
    let headers = header_map(std::mem::take(&mut params.headers))?;
    let client = client(params.redirect_policy)?;
    let mut request = client.request(method, url).headers(headers);
    if let Some(body) = params.body.take() {
        request = request.body(body.0);
    }
    if let Some(ms) = params.timeout_ms {
        request = request.timeout(Duration::from_millis(ms));
    }
    let expired = params.timeout_ms == Some(0);
    Ok(Checked { request, expired })
}

impl Checked {
    /// Send it and wait for the response head; -32603 when there is none.
    pub async fn send(self) -> Result<reqwest::Response, RpcError> {
        if self.expired {
            return Err(RpcError::internal(
                "http/request failed: route-aware request timed out",
            ));
        }
        self.request.send().await.map_err(|err| {
            let message = format!("http/request failed: {err}");
            let (timeout, connect) = (err.is_timeout(), err.is_connect());
            let error = err.without_url();
            tracing::debug!(timeout, connect, %error, "http/request send failed");
            RpcError::internal(message)
        })
    }
}

/// The request headers in order, repeats kept; `valueEnvVar` appends the variable's value.
fn header_map(headers: Vec<HttpHeader>) -> Result<HeaderMap, RpcError> {
    let mut map = HeaderMap::new();
    for header in headers {
        let name = HeaderName::from_bytes(header.name.as_bytes()).map_err(|err| {
            RpcError::invalid_params(format!("http/request header name is invalid: {err}"))
        })?;
        let mut value = header.value;
        if let Some(var) = &header.value_env_var {
            match std::env::var(var) {
                Ok(from_env) if !from_env.is_empty() => value.push_str(&from_env),
                Ok(_) => {
                    return Err(RpcError::invalid_params(format!(
                        "http/request header {} requires a non-empty executor environment \
                         variable {var}",
                        header.name
                    )));
                }
                Err(_) => {
                    return Err(RpcError::invalid_params(format!(
                        "http/request header {} requires executor environment variable {var}",
                        header.name
                    )));
                }
            }
        }
        let value = HeaderValue::from_str(&value).map_err(|err| {
            RpcError::invalid_params(format!(
                "http/request header value is invalid for {}: {err}",
                header.name
            ))
        })?;
        map.append(name, value);
    }
    Ok(map)
}

/// The response headers in order; values that are not visible ASCII are left out.
pub fn response_headers(headers: &HeaderMap) -> Vec<HttpHeader> {
    headers
        .iter()
        .filter_map(|(name, value)| {
            Some(HttpHeader {
                name: name.as_str().to_owned(),
                value: value.to_str().ok()?.to_owned(),
                value_env_var: None,
            })
        })
        .collect()
}

struct Clients {
    follow: reqwest::Client,
    stop: reqwest::Client,
}

fn client(policy: HttpRedirectPolicy) -> Result<&'static reqwest::Client, RpcError> {
    static CLIENTS: OnceLock<Result<Clients, String>> = OnceLock::new();
    let clients = CLIENTS.get_or_init(|| {
        // reqwest takes the process-wide rustls provider; ring unless one is installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let build = |policy| {
            reqwest::Client::builder()
                .redirect(policy)
                .build()
                .map_err(|err| err.to_string())
        };
        Ok(Clients {
            follow: build(redirect::Policy::default())?,
            stop: build(redirect::Policy::none())?,
        })
    });
    let clients = clients
        .as_ref()
        .map_err(|err| RpcError::internal(format!("failed to build http/request client: {err}")))?;
    Ok(match policy {
        HttpRedirectPolicy::Follow => &clients.follow,
        HttpRedirectPolicy::Stop => &clients.stop,
    })
}
