//! Making a [`Client`] (connected lazily by its first call, or at once by
//! [`Client::connect`]; the connect itself is `rpc::connect`'s), and a first start in the
//! handshake's flight.
//!
//! When the first call is a start, it rides in the same flight as the handshake: the
//! upgrade request, `initialize`, `initialized` and `process/start` leave together and the
//! server answers them in wire order (one round trip for a one-shot). A gate held for the
//! whole connect makes the other first calls wait for it; only the holder may put its
//! start in the flight.

use crate::client::Client;
use crate::error::ClientError;
use crate::options::{ClientOptions, Endpoint};
use crate::process::Process;
use crate::procs::Processes;
use crate::rpc::{Opening, decode};
use crate::spec::ProcessSpec;
use rexec_protocol::{extensions, method};
use tokio::sync::MutexGuard;

impl Client {
    /// A client for `endpoint`, not connected yet: the first call that needs the server
    /// connects (a first [`Client::start`] or [`Client::run`] in the same flight as the
    /// handshake), and a call whose connect fails gets the error; the next call tries
    /// again. No I/O happens here.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), rexec_client::ClientError> {
    /// use rexec_client::{Client, ClientOptions, Endpoint, ProcessSpec};
    /// let client = Client::new(
    ///     Endpoint::WebSocket("ws://127.0.0.1:7000".into()),
    ///     ClientOptions::default(),
    /// );
    /// // Connects, initializes and starts in one round trip.
    /// let done = client.run(ProcessSpec::new(["uname", "-a"])).await?;
    /// print!("{}", String::from_utf8_lossy(&done.stdout));
    /// # Ok(()) }
    /// ```
    pub fn new(endpoint: Endpoint, options: ClientOptions) -> Client {
        Client {
            inner: Processes::new(endpoint, options),
        }
    }

    /// [`Client::new`], connected now: connect errors (a refused token, an unreachable
    /// server) surface here, and the server's environment and extensions are known.
    /// `initialize` and `initialized` are written right behind the WebSocket upgrade
    /// request, without waiting for its answer.
    pub async fn connect(
        endpoint: Endpoint,
        options: ClientOptions,
    ) -> Result<Client, ClientError> {
        let client = Client::new(endpoint, options);
        client.inner.rpc.ensure_connected().await?;
        Ok(client)
    }

    /// The first start, in the same flight as the handshake (the caller holds the gate).
    /// Without `spec.cwd` the start omits `cwd` (rexec's `process/start.defaultCwd`: the
    /// server's own); a server without that extension (codex) refuses it, and the start is
    /// sent again with the cwd from the `initialize` result, one round trip later.
    pub(crate) async fn start_in_first_flight(
        &self,
        spec: ProcessSpec,
        gate: MutexGuard<'_, ()>,
    ) -> Result<Process, ClientError> {
        let inner = &self.inner;
        let rpc = &inner.rpc;
        let mut opening = Opening::default();
        let reply = rpc.handshake(&mut opening, None);
        // Whether the server orders its notifications is known with the initialize
        // result; until then a gap gets the reorder grace (events arrive behind it anyway).
        let shared = self.add_route(&spec, false)?;
        let params = match spec.start_params(shared.id.clone(), None) {
            Ok(params) => params,
            Err(err) => {
                inner.remove_route(&shared);
                return Err(crate::client::encoding_error(&err));
            }
        };
        let (id, frame) = rpc.request(method::PROCESS_START, &params);
        let started = opening.applied(id, frame, inner.start_answer(&shared));
        let established = rpc.establish(opening, reply).await;
        drop(gate);
        if let Err(err) = established {
            inner.remove_route(&shared);
            return Err(err);
        }
        let started = started.await.unwrap_or_else(|_| {
            Err(ClientError::Disconnected(
                "the connection ended before the response".to_owned(),
            ))
        });
        match decode(method::PROCESS_START, started) {
            // Refused for the missing cwd (no process was started): now it is known.
            Err(ClientError::Rpc(_))
                if spec.cwd.is_none() && !self.supports(extensions::START_DEFAULT_CWD) =>
            {
                inner.remove_route(&shared);
                Box::pin(self.start(spec)).await
            }
            started => self.finish_start(shared, started, &spec),
        }
    }
}
