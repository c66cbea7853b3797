//! A fault-injecting WebSocket proxy for tests: sits between the client and a server on
//! loopback, counts the client's requests by method (the "reads on the wire" the repair
//! rules are pinned by), and lets a test drop, duplicate, delay, reorder or rewrite any
//! server message, or cut the connection.
//!
//! Each accepted connection is one task relaying both directions; the rule sees every
//! server→client text message (with the method of the request a response answers) and
//! returns a [`Verdict`]. A binary output frame (`process/output.binary`) is shown to the
//! rule as the equivalent `process/output` notification and, when passed on, forwarded as
//! the original binary message, so every rule works the same for both encodings.
//! `cut_all` ends every current connection at once (both sockets dropped, no close
//! frames); `rewrite_requests` edits client→server requests before they are relayed (to
//! play a peer that never saw a field); `refuse` makes new connections fail before the upgrade; `inject` applies a
//! [`Fault`] to one live connection (cut it, reset the client's socket, or stop reading one
//! side for a while), which is how the chaos soak drives its faults from outside the
//! message rule.

use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::http::header::AUTHORIZATION;
use tokio_tungstenite::tungstenite::{Message, http::HeaderValue};

/// What to do with one server→client message.
#[derive(Debug, Clone)]
pub enum Verdict {
    Pass,
    Drop,
    Duplicate,
    /// Deliver after this long; later messages overtake it.
    Delay(Duration),
    /// Deliver right after the next message that passes.
    HoldForNext,
    /// Deliver once the gate reads `true`; later messages overtake it.
    Gate(watch::Receiver<bool>),
    Replace(Value),
    /// Swallow this message and cut the connection.
    Cut,
    /// Swallow this message, close the client's socket, keep the server's open this long.
    CutClientSide(Duration),
}

/// A fault applied to one live connection from outside the rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Drop both sockets at once, no close frames.
    Cut,
    /// Stop reading from the server for this long: its frames (and its pings' pongs) back
    /// up, as behind a peer that stopped reading.
    StallServer(Duration),
    /// Stop reading from the client for this long: its requests back up.
    StallClient(Duration),
    /// Reset the client's socket (RST, so its next write fails at once) and close the
    /// server's: what the client has received but not yet read stays readable to it.
    ResetClient,
}

/// A server→client message as the rule sees it.
pub struct Frame<'a> {
    pub value: &'a Value,
    /// The notification's method.
    pub method: Option<&'a str>,
    /// For a response: the method of the request it answers.
    pub answers: Option<&'a str>,
}

impl Frame<'_> {
    pub fn is(&self, method: &str) -> bool {
        self.method == Some(method)
    }

    pub fn seq(&self) -> Option<u64> {
        self.value["params"]["seq"].as_u64()
    }

    /// Decoded byte length of a `process/output` chunk.
    pub fn chunk_len(&self) -> usize {
        let text = self.value["params"]["chunk"].as_str().unwrap_or("");
        base64_simd::STANDARD
            .decode_to_vec(text)
            .map_or(0, |b| b.len())
    }
}

type Rule = Box<dyn FnMut(&Frame<'_>) -> Verdict + Send>;
type RequestRewrite = Box<dyn FnMut(&mut Value) + Send>;

#[derive(Debug, Default, Clone)]
pub struct Stats {
    /// Client requests by method, over every connection.
    pub requests: HashMap<String, usize>,
    /// Client notifications by method.
    pub client_notifications: HashMap<String, usize>,
    /// Successful responses (with a `result`) by the method they answer.
    pub results: HashMap<String, usize>,
    /// Server notifications by method (as received from the server).
    pub notifications: HashMap<String, usize>,
    /// Decoded `process/output` bytes received from the server (JSON or binary).
    pub output_bytes: u64,
    /// Output frames the server sent as binary messages (counted in `notifications` too).
    pub binary_frames: usize,
    pub connections: usize,
    /// Client sockets reset by [`Fault::ResetClient`] (counted once the reset is sent).
    pub client_resets: usize,
    /// Connections the server ended (its socket closed or a close frame), not the proxy.
    pub server_hangups: usize,
    /// Of those, the ones it ended after the proxy had stopped reading from it a while
    /// ([`Fault::StallServer`]): the server judged the peer dead.
    pub hangups_after_stall: usize,
}

/// How faults reach one relaying connection. A reset has its own way in, heard even while
/// the relay is blocked sending to a client that does not read.
struct Inbox {
    faults: mpsc::UnboundedSender<Fault>,
    reset: Arc<Notify>,
}

struct State {
    upstream: String,
    rule: Mutex<Rule>,
    rewrite: Mutex<Option<RequestRewrite>>,
    stats: Mutex<Stats>,
    requests: Mutex<Vec<Value>>,
    refuse: AtomicBool,
    cuts: watch::Sender<u64>,
    changes: watch::Sender<u64>,
    next_connection: AtomicU64,
    /// Each relaying connection's fault inbox, by connection number.
    live: Mutex<HashMap<u64, Inbox>>,
}

pub struct Proxy {
    pub url: String,
    state: Arc<State>,
    accept: JoinHandle<()>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Proxy {
    pub async fn start(upstream: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let state = Arc::new(State {
            upstream: upstream.to_owned(),
            rule: Mutex::new(Box::new(|_: &Frame<'_>| Verdict::Pass)),
            rewrite: Mutex::new(None),
            stats: Mutex::new(Stats::default()),
            requests: Mutex::new(Vec::new()),
            refuse: AtomicBool::new(false),
            cuts: watch::Sender::new(0),
            changes: watch::Sender::new(0),
            next_connection: AtomicU64::new(1),
            live: Mutex::default(),
        });
        let accept_state = Arc::clone(&state);
        let accept = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                if accept_state.refuse.load(Ordering::SeqCst) {
                    drop(tcp);
                    continue;
                }
                let _ = tcp.set_nodelay(true);
                tokio::spawn(relay(Arc::clone(&accept_state), tcp));
            }
        });
        Self {
            url: format!("ws://{addr}"),
            state,
            accept,
        }
    }

    pub fn set_rule(&self, rule: impl FnMut(&Frame<'_>) -> Verdict + Send + 'static) {
        *lock(&self.state.rule) = Box::new(rule);
    }

    /// Edit every client→server JSON message (request or notification) before it is
    /// counted and relayed.
    pub fn rewrite_requests(&self, rewrite: impl FnMut(&mut Value) + Send + 'static) {
        *lock(&self.state.rewrite) = Some(Box::new(rewrite));
    }

    pub fn stats(&self) -> Stats {
        lock(&self.state.stats).clone()
    }

    /// Requests the client sent with this method.
    pub fn count(&self, method: &str) -> usize {
        self.stats().requests.get(method).copied().unwrap_or(0)
    }

    /// Successful responses to requests with this method.
    pub fn results(&self, method: &str) -> usize {
        self.stats().results.get(method).copied().unwrap_or(0)
    }

    /// Every request the client sent with this method, in order.
    pub fn requests(&self, method: &str) -> Vec<Value> {
        lock(&self.state.requests)
            .iter()
            .filter(|r| r["method"] == method)
            .cloned()
            .collect()
    }

    pub fn cut_all(&self) {
        self.state.cuts.send_modify(|n| *n += 1);
    }

    /// The numbers of the connections relaying right now, in the order they opened.
    pub fn live_connections(&self) -> Vec<u64> {
        let mut live: Vec<u64> = lock(&self.state.live).keys().copied().collect();
        live.sort_unstable();
        live
    }

    /// Apply `fault` to connection `id`; `false` if it has ended meanwhile.
    pub fn inject(&self, id: u64, fault: Fault) -> bool {
        let live = lock(&self.state.live);
        let Some(inbox) = live.get(&id) else {
            return false;
        };
        if fault == Fault::ResetClient {
            inbox.reset.notify_one();
            return true;
        }
        inbox.faults.send(fault).is_ok()
    }

    pub fn refuse(&self, refuse: bool) {
        self.state.refuse.store(refuse, Ordering::SeqCst);
    }

    /// Wait (bounded by the test deadline) until `pred` holds for the stats.
    pub async fn wait_for(&self, what: &str, mut pred: impl FnMut(&Stats) -> bool) {
        let mut changes = self.state.changes.subscribe();
        within(what, async {
            loop {
                changes.borrow_and_update();
                if pred(&self.stats()) {
                    return;
                }
                if changes.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut_all();
    }
}

enum End {
    Both,
    ClientSide(Duration),
    ResetClient,
}

/// A relay's entry in the live table, removed when the relay ends however it ends.
struct LiveEntry<'a> {
    state: &'a State,
    id: u64,
}

impl Drop for LiveEntry<'_> {
    fn drop(&mut self) {
        lock(&self.state.live).remove(&self.id);
    }
}

/// Sleep until `until`, or forever when there is no stall.
async fn stall_ends(until: Option<Instant>) {
    match until {
        Some(until) => tokio::time::sleep_until(until).await,
        None => std::future::pending().await,
    }
}

#[allow(clippy::result_large_err)] // the handshake callback's signature is tungstenite's
async fn relay(state: Arc<State>, tcp: TcpStream) {
    let auth: Arc<Mutex<Option<HeaderValue>>> = Arc::default();
    let seen = Arc::clone(&auth);
    let callback = move |request: &Request, response: Response| {
        *lock(&seen) = request.headers().get(AUTHORIZATION).cloned();
        Ok(response)
    };
    let Ok(client) = tokio_tungstenite::accept_hdr_async(tcp, callback).await else {
        return;
    };
    let Ok(mut request) = state.upstream.as_str().into_client_request() else {
        return;
    };
    if let Some(value) = lock(&auth).take() {
        request.headers_mut().insert(AUTHORIZATION, value);
    }
    let Ok((server, _)) = tokio_tungstenite::connect_async_with_config(request, None, true).await
    else {
        return;
    };
    lock(&state.stats).connections += 1;
    let (faults_tx, mut faults) = mpsc::unbounded_channel::<Fault>();
    let id = state.next_connection.fetch_add(1, Ordering::SeqCst);
    let reset = Arc::new(Notify::new());
    let inbox = Inbox {
        faults: faults_tx,
        reset: Arc::clone(&reset),
    };
    lock(&state.live).insert(id, inbox);
    let _live = LiveEntry { state: &state, id };
    let mut server_stalled: Option<Instant> = None;
    let mut server_was_stalled = false;
    let mut client_stalled: Option<Instant> = None;
    let (mut to_client, mut from_client) = client.split();
    let (mut to_server, mut from_server) = server.split();
    let (delayed_tx, mut delayed) = mpsc::unbounded_channel::<Message>();
    let mut cuts = state.cuts.subscribe();
    let mut methods: HashMap<String, String> = HashMap::new();
    let mut held: Option<Message> = None;
    let end = loop {
        tokio::select! {
            message = from_client.next(), if client_stalled.is_none() => {
                let Some(Ok(mut message)) = message else { break End::Both };
                let mut parsed = match &message {
                    Message::Text(text) => serde_json::from_str::<Value>(text).ok(),
                    _ => None,
                };
                if let Some(value) = &mut parsed
                    && let Some(rewrite) = lock(&state.rewrite).as_mut()
                {
                    rewrite(value);
                    message = Message::text(value.to_string());
                }
                if let Some(value) = parsed
                    && let Some(method) = value["method"].as_str()
                {
                    if let Some(id) = value.get("id") {
                        methods.insert(id.to_string(), method.to_owned());
                        *lock(&state.stats).requests.entry(method.to_owned()).or_default() += 1;
                        lock(&state.requests).push(value.clone());
                    } else {
                        *lock(&state.stats)
                            .client_notifications
                            .entry(method.to_owned())
                            .or_default() += 1;
                    }
                    state.changes.send_modify(|n| *n += 1);
                }
                if matches!(message, Message::Close(_)) || to_server.send(message).await.is_err() {
                    break End::Both;
                }
            }
            message = from_server.next(), if server_stalled.is_none() => {
                let Some(Ok(message)) = message.filter(|m| !matches!(m, Ok(Message::Close(_))))
                else {
                    let mut stats = lock(&state.stats);
                    stats.server_hangups += 1;
                    stats.hangups_after_stall += usize::from(server_was_stalled);
                    drop(stats);
                    state.changes.send_modify(|n| *n += 1);
                    break End::Both;
                };
                let value = match &message {
                    Message::Text(text) => serde_json::from_str::<Value>(text).ok(),
                    Message::Binary(bytes) => binary_output_as_json(&state, bytes),
                    _ => None,
                };
                let Some(value) = value else { continue };
                let verdict = judge(&state, &methods, &value);
                let mut out = Vec::new();
                match verdict {
                    Verdict::Pass => out.push(message),
                    Verdict::Drop => {}
                    Verdict::Duplicate => out.extend([message.clone(), message]),
                    Verdict::Delay(after) => {
                        let tx = delayed_tx.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(after).await;
                            let _ = tx.send(message);
                        });
                    }
                    Verdict::Gate(mut gate) => {
                        let tx = delayed_tx.clone();
                        tokio::spawn(async move {
                            if gate.wait_for(|open| *open).await.is_ok() {
                                let _ = tx.send(message);
                            }
                        });
                    }
                    Verdict::HoldForNext => {
                        out.extend(held.replace(message));
                    }
                    Verdict::Replace(value) => out.push(Message::text(value.to_string())),
                    Verdict::Cut => break End::Both,
                    Verdict::CutClientSide(hold) => break End::ClientSide(hold),
                }
                if !out.is_empty() {
                    out.extend(held.take());
                }
                let mut failed = None;
                for message in out {
                    if let Err(end) = send_to_client(&mut to_client, message, &reset).await {
                        failed = Some(end);
                        break;
                    }
                }
                if let Some(End::ResetClient) = failed {
                    break End::ResetClient;
                }
            }
            Some(message) = delayed.recv() => {
                if let Err(end) = send_to_client(&mut to_client, message, &reset).await {
                    break end;
                }
            }
            () = reset.notified() => break End::ResetClient,
            _ = cuts.changed() => break End::Both,
            fault = faults.recv() => match fault {
                Some(Fault::Cut) | None => break End::Both,
                Some(Fault::StallServer(d)) => {
                    server_stalled = Some(Instant::now() + d);
                    server_was_stalled = true;
                }
                Some(Fault::StallClient(d)) => client_stalled = Some(Instant::now() + d),
                Some(Fault::ResetClient) => break End::ResetClient,
            },
            () = stall_ends(server_stalled) => server_stalled = None,
            () = stall_ends(client_stalled) => client_stalled = None,
        }
    };
    let client = to_client.reunite(from_client);
    if let (End::ResetClient, Ok(client)) = (&end, &client) {
        let _ = client.get_ref().set_zero_linger();
    }
    drop(client);
    if matches!(end, End::ResetClient) {
        lock(&state.stats).client_resets += 1;
        state.changes.send_modify(|n| *n += 1);
    }
    if let End::ClientSide(hold) = end {
        tokio::time::sleep(hold).await;
    }
    drop((to_server, from_server));
}

/// Send `message` to the client, unless a reset comes first.
async fn send_to_client(
    to_client: &mut SplitSink<WebSocketStream<TcpStream>, Message>,
    message: Message,
    reset: &Notify,
) -> Result<(), End> {
    tokio::select! {
        sent = to_client.send(message) => sent.map_err(|_| End::Both),
        () = reset.notified() => Err(End::ResetClient),
    }
}

/// A binary output frame as the `process/output` notification it stands for.
fn binary_output_as_json(state: &State, bytes: &[u8]) -> Option<Value> {
    let frame = rexec_protocol::binary_output::decode(bytes).ok()?;
    lock(&state.stats).binary_frames += 1;
    Some(serde_json::json!({
        "method": "process/output",
        "params": {
            "processId": frame.process_id,
            "seq": frame.seq,
            "stream": frame.stream,
            "chunk": base64_simd::STANDARD.encode_to_string(frame.chunk),
        },
    }))
}

fn judge(state: &State, methods: &HashMap<String, String>, value: &Value) -> Verdict {
    let method = value["method"].as_str();
    let answers = value
        .get("id")
        .filter(|_| method.is_none())
        .and_then(|id| methods.get(&id.to_string()))
        .map(String::as_str);
    let frame = Frame {
        value,
        method,
        answers,
    };
    {
        let mut stats = lock(&state.stats);
        if let Some(answered) = answers.filter(|_| value.get("result").is_some()) {
            *stats.results.entry(answered.to_owned()).or_default() += 1;
        }
        if let Some(method) = method {
            *stats.notifications.entry(method.to_owned()).or_default() += 1;
            if method == "process/output" {
                stats.output_bytes += frame.chunk_len() as u64;
            }
        }
    }
    let verdict = (lock(&state.rule))(&frame);
    state.changes.send_modify(|n| *n += 1);
    verdict
}

/// How long [`Proxy::wait_for`] waits before it fails the test.
const WAIT_LIMIT: Duration = Duration::from_secs(30);

async fn within<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(WAIT_LIMIT, future)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {WAIT_LIMIT:?}"))
}
