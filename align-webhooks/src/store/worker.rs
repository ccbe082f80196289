//! The SQLite store's worker: one thread that owns the connection and runs every call.
//!
//! Calls arrive on a channel. A thread of its own costs one wake-up per call, where tokio's
//! blocking pool (one `spawn_blocking` per call) costs a task, its queue and often a thread
//! hand-over. It also makes group commit
//! natural: the worker takes every call that is waiting when it wakes, and all the attempt
//! records among them share one transaction (an unknown delivery fails alone, before
//! writing anything; a failed write fails the round). A caller is answered only after the
//! commit, so an answer always means "durably recorded".

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc;

use chrono::{DateTime, Utc};
use rusqlite::Connection;
use tokio::sync::oneshot;

use super::sqlite::{EndpointStates, immediate, record_one};
use crate::error::{Error, Result};
use crate::model::{Attempt, DeliveryId, Next};

/// One attempt to record.
pub(super) struct AttemptJob {
    pub(super) delivery: DeliveryId,
    pub(super) attempt: Attempt,
    pub(super) next: Next,
}

/// The endpoint's `failing_since` after each attempt, in order (or why that one failed).
pub(super) type Recorded = Vec<Result<Option<DateTime<Utc>>>>;

/// Deliveries claimed and not yet recorded: delivery id → (rowid, endpoint id). A record
/// finds its row here instead of searching the id index (the delivery's rowid and endpoint
/// never change; a row deleted meanwhile is noticed by the update touching nothing).
pub(super) type Claimed = HashMap<DeliveryId, (i64, String)>;

/// Most entries [`Claimed`] keeps: deliveries claimed but never recorded (handed back,
/// or their endpoint deleted) would otherwise stay; past this it starts over, and records
/// search the index again.
const MAX_CLAIMED: usize = 100_000;

/// Work on the connection; the closure sends its own answer.
pub(super) type Work = Box<dyn FnOnce(&mut Connection, &mut Claimed) + Send>;

/// A call for the worker.
pub(super) enum Job {
    /// Any work on the connection.
    Run(Work),
    /// Attempts to record, committed with every other record waiting.
    Record(Vec<AttemptJob>, oneshot::Sender<Recorded>),
}

/// Most calls taken in one round, so a steady stream of calls cannot hold back a commit.
const MAX_ROUND: usize = 256;

/// Starts the worker on its own thread: `open` makes the connection there. Answers once the
/// connection is open (or failed to open).
pub(super) async fn start(
    open: impl FnOnce() -> Result<Connection> + Send + 'static,
) -> Result<mpsc::Sender<Job>> {
    let (jobs, queue) = mpsc::channel();
    let (ready, opened) = oneshot::channel();
    std::thread::Builder::new()
        .name("align-webhooks-sqlite".to_owned())
        .spawn(move || match open() {
            Ok(conn) => {
                let _ = ready.send(Ok(()));
                serve(conn, &queue);
            }
            Err(e) => {
                let _ = ready.send(Err(e));
            }
        })
        .map_err(|_| Error::StoreWorker)?;
    opened.await.map_err(|_| Error::StoreWorker)??;
    Ok(jobs)
}

/// Runs calls until every sender is gone (the store and its clones were dropped).
fn serve(mut conn: Connection, queue: &mpsc::Receiver<Job>) {
    let mut records: Vec<(Vec<AttemptJob>, oneshot::Sender<Recorded>)> = Vec::new();
    let mut claimed = Claimed::new();
    while let Ok(first) = queue.recv() {
        let mut next = Some(first);
        let mut taken = 0;
        while let Some(job) = next {
            match job {
                // A panic drops the closure's answer sender, which its caller sees as
                // `StoreWorker`; the worker goes on (an open transaction was rolled back by
                // rusqlite's guard, or is rolled back by the next `immediate`).
                Job::Run(f) => drop(catch_unwind(AssertUnwindSafe(|| {
                    f(&mut conn, &mut claimed)
                }))),
                Job::Record(jobs, answer) => records.push((jobs, answer)),
            }
            taken += 1;
            next = if taken < MAX_ROUND {
                queue.try_recv().ok()
            } else {
                None
            };
        }
        if !records.is_empty() {
            commit_records(&mut conn, &mut records, &mut claimed);
        }
        if claimed.len() > MAX_CLAIMED {
            claimed.clear();
        }
    }
}

/// Commits every waiting record in one transaction and answers their callers.
fn commit_records(
    conn: &mut Connection,
    waiting: &mut Vec<(Vec<AttemptJob>, oneshot::Sender<Recorded>)>,
    claimed: &mut Claimed,
) {
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        immediate(conn, |c| {
            let mut endpoints = EndpointStates::new();
            waiting
                .iter()
                .map(|(jobs, _)| {
                    jobs.iter()
                        .map(|job| {
                            record_one(c, job, claimed.remove(&job.delivery), &mut endpoints)
                        })
                        .collect()
                })
                .collect::<Result<Vec<Recorded>>>()
        })
    }));
    match outcome {
        Ok(Ok(results)) => {
            for ((_, answer), result) in waiting.drain(..).zip(results) {
                let _ = answer.send(result);
            }
        }
        Ok(Err(e)) => {
            let text = e.to_string();
            for (jobs, answer) in waiting.drain(..) {
                let failed = jobs
                    .iter()
                    .map(|_| Err(Error::BatchCommit(text.clone())))
                    .collect();
                let _ = answer.send(failed);
            }
        }
        // Dropping the answers tells the callers (`StoreWorker`).
        Err(_) => waiting.clear(),
    }
}
