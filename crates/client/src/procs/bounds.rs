//! The one bound on what the client keeps per process without the caller reading it: the
//! reorder buffer (events that arrived ahead of a gap) and the replay history (delivered
//! events a late or lagging subscriber can have without a read).

/// A limit in events and in the bytes they hold ([`ProcessEvent::weight`]).
///
/// [`ProcessEvent::weight`]: crate::event::ProcessEvent::weight
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds {
    pub events: usize,
    pub bytes: usize,
}

/// Upstream's capacity (upstream #31576) and 1 MiB of output.
pub(crate) const PER_PROCESS: Bounds = Bounds {
    events: 256,
    bytes: 1024 * 1024,
};

impl Bounds {
    /// Whether `events` events holding `bytes` bytes are more than the bound allows.
    pub(crate) fn exceeded(self, events: usize, bytes: usize) -> bool {
        events > self.events || bytes > self.bytes
    }
}
