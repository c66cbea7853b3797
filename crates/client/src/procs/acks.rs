//! Acknowledgements for a process whose output the server holds (`holdOutput`): the
//! server never evicts output the client has not acknowledged and stops reading the child
//! once that fills its retention, so the client must acknowledge what it has consumed —
//! often enough that the server never waits on output the client already has.
//!
//! The lossless subscriber acknowledges as it consumes; once no lossless subscriber can
//! come (a `run`, every handle dropped) or it left, the connection's reader does, as
//! events arrive. Either way an acknowledgement goes out after [`ACK_EVERY_BYTES`] or
//! [`ACK_EVERY_EVENTS`], well inside the server's hold (8 MiB / 50 000 chunks, less one
//! 64 KiB read): a consumer that has taken everything has always acknowledged all but
//! less than that, so the server is never stalled on it.

/// Output bytes consumed between two acknowledgements, at most.
pub(crate) const ACK_EVERY_BYTES: u64 = 256 * 1024;
/// Events consumed between two acknowledgements, at most.
pub(crate) const ACK_EVERY_EVENTS: u64 = 1024;

/// Who acknowledges, and how much is unacknowledged.
#[derive(Debug, Default)]
pub(crate) struct HeldAcks {
    /// The process asked for `holdOutput` and the server lists the extension.
    held: bool,
    /// No lossless subscriber consumes: the reader acknowledges on arrival.
    on_arrival: bool,
    /// The last seq acknowledged.
    seq: u64,
    /// Consumed since then.
    bytes: u64,
    events: u64,
}

impl HeldAcks {
    pub(crate) fn set_held(&mut self, held: bool) {
        self.held = held;
    }

    pub(crate) fn is_held(&self) -> bool {
        self.held
    }

    /// From now on the reader acknowledges what arrives; `Some(seq)` to acknowledge at
    /// once (everything delivered so far, up to `delivered`).
    pub(crate) fn switch_to_arrival(&mut self, delivered: u64) -> Option<u64> {
        if !self.held || self.on_arrival {
            return None;
        }
        self.on_arrival = true;
        self.take(delivered)
    }

    pub(crate) fn acks_on_arrival(&self) -> bool {
        self.held && self.on_arrival
    }

    /// `events` events holding `bytes` output bytes were consumed, up to `seq`: the seq
    /// to acknowledge now, if one is due.
    pub(crate) fn consumed(&mut self, seq: u64, bytes: u64, events: u64) -> Option<u64> {
        if !self.held || seq <= self.seq {
            return None;
        }
        self.bytes += bytes;
        self.events += events;
        if self.bytes >= ACK_EVERY_BYTES || self.events >= ACK_EVERY_EVENTS {
            return self.take(seq);
        }
        None
    }

    /// The last acknowledgement, to send again on a new connection (the one in flight may
    /// have been lost with the old).
    pub(crate) fn last(&self) -> Option<u64> {
        (self.held && self.seq > 0).then_some(self.seq)
    }

    fn take(&mut self, seq: u64) -> Option<u64> {
        if seq <= self.seq {
            return None;
        }
        self.seq = seq;
        self.bytes = 0;
        self.events = 0;
        Some(seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held() -> HeldAcks {
        let mut acks = HeldAcks::default();
        acks.set_held(true);
        acks
    }

    #[test]
    fn nothing_is_acknowledged_unless_the_server_holds() {
        let mut acks = HeldAcks::default();
        assert_eq!(acks.consumed(10, ACK_EVERY_BYTES * 4, 10), None);
        assert_eq!(acks.switch_to_arrival(10), None);
        assert_eq!(acks.last(), None);
    }

    #[test]
    fn an_acknowledgement_goes_out_after_enough_bytes_or_events() {
        let mut acks = held();
        assert_eq!(acks.consumed(1, ACK_EVERY_BYTES - 1, 1), None);
        assert_eq!(acks.consumed(2, 1, 1), Some(2), "the byte bound");
        for seq in 3..(3 + ACK_EVERY_EVENTS - 1) {
            assert_eq!(acks.consumed(seq, 1, 1), None);
        }
        assert_eq!(
            acks.consumed(3 + ACK_EVERY_EVENTS - 1, 1, 1),
            Some(3 + ACK_EVERY_EVENTS - 1),
            "the event bound, for output in small chunks"
        );
        assert_eq!(acks.last(), Some(3 + ACK_EVERY_EVENTS - 1));
    }

    #[test]
    fn seqs_at_or_below_the_last_acknowledgement_change_nothing() {
        let mut acks = held();
        assert_eq!(acks.consumed(5, ACK_EVERY_BYTES, 1), Some(5));
        assert_eq!(acks.consumed(5, ACK_EVERY_BYTES, 1), None);
        assert_eq!(acks.consumed(4, ACK_EVERY_BYTES, 1), None);
    }

    #[test]
    fn switching_to_the_reader_acknowledges_what_was_delivered() {
        let mut acks = held();
        assert_eq!(acks.consumed(3, 10, 3), None);
        assert_eq!(acks.switch_to_arrival(7), Some(7));
        assert!(acks.acks_on_arrival());
        assert_eq!(acks.switch_to_arrival(9), None, "once");
    }
}
