//! Wire order for `process/write`: writes to one process take effect in the order their
//! requests arrived, even though each runs in its own task (a write may wait for room in the
//! stdin queue, and must not block the connection while it does).
//!
//! A write takes a numbered [`Turn`] at admission, in wire order, and waits until every
//! earlier turn has finished. A turn finishes when it is dropped — after its write, or when
//! its task is aborted with its connection — so an abandoned write never stalls later ones.

use crate::sync::lock;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

#[derive(Default)]
pub struct WriteOrder {
    issued: Mutex<Issued>,
    /// The ticket whose turn it is.
    serving: watch::Sender<u64>,
}

#[derive(Default)]
struct Issued {
    next: u64,
    /// Tickets that finished before their turn came (aborted while waiting).
    finished_early: BTreeSet<u64>,
}

pub struct Turn {
    order: Arc<WriteOrder>,
    ticket: u64,
}

impl WriteOrder {
    pub fn take_turn(self: &Arc<Self>) -> Turn {
        let mut issued = lock(&self.issued);
        let ticket = issued.next;
        issued.next += 1;
        Turn {
            order: Arc::clone(self),
            ticket,
        }
    }

    fn finish(&self, ticket: u64) {
        let mut issued = lock(&self.issued);
        let serving = *self.serving.borrow();
        if ticket != serving {
            issued.finished_early.insert(ticket);
            return;
        }
        let mut next = ticket + 1;
        while issued.finished_early.remove(&next) {
            next += 1;
        }
        self.serving.send_replace(next);
    }
}

impl Turn {
    /// Wait until every earlier turn has finished.
    pub async fn wait(&self) {
        let mut serving = self.order.serving.subscribe();
        let _ = serving.wait_for(|serving| *serving == self.ticket).await;
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        self.order.finish(self.ticket);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn turns_run_in_ticket_order_and_skip_abandoned_ones() {
        let order = Arc::new(WriteOrder::default());
        let first = order.take_turn();
        let abandoned = order.take_turn();
        let third = order.take_turn();
        let waiting = tokio::spawn(async move {
            third.wait().await;
        });
        drop(abandoned);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            !waiting.is_finished(),
            "the third turn must wait for the first"
        );
        first.wait().await;
        drop(first);
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("third turn runs once the first finished and the second was abandoned")
            .expect("task");
    }
}
