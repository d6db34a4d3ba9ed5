//! The group committer: one task that writes the delivery state of every binding (cursor
//! moves, retry schedules, dead letters) to the catalog.
//!
//! Workers send their pending [`DeliveryUpdate`] and wait for the answer; the committer takes
//! everything queued at that moment and applies it as ONE catalog transaction followed by ONE
//! flush ([`Catalog::apply_delivery`](crate::catalog::Catalog::apply_delivery)), on a blocking
//! thread. While one flush runs, the next requests queue up, so the cost of an fsync is shared
//! by every binding that moved meanwhile; a worker has at most one request outstanding.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::bus::EventBus;
use crate::catalog::{BindingId, DeliveryUpdate};

/// The answer to a commit. On failure the worker stops and is restarted from the durable
/// state (one transaction: the failed update is wholly absent), so nothing is resent by hand.
pub type CommitResult = std::result::Result<(), String>;

/// One worker's request.
pub struct CommitRequest {
    pub id: BindingId,
    pub update: DeliveryUpdate,
    pub done: oneshot::Sender<CommitResult>,
}

/// Runs until every sender is dropped.
pub async fn run(bus: Arc<EventBus>, mut rx: mpsc::UnboundedReceiver<CommitRequest>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        let (updates, dones): (Vec<_>, Vec<_>) = batch
            .into_iter()
            .map(|r| ((r.id, r.update), r.done))
            .unzip();
        let bus2 = bus.clone();
        let result =
            tokio::task::spawn_blocking(move || bus2.catalog().apply_delivery(&updates)).await;
        let answer = match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("writing delivery state to the catalog failed: {e}")),
            Err(join) => Err(format!("the catalog writer task failed: {join}")),
        };
        if let Err(e) = &answer {
            tracing::error!(error = %e, "delivery state not committed");
        }
        for done in dones {
            let _ = done.send(answer.clone());
        }
    }
}
