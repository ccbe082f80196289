//! Group commit for attempt records: concurrent `record_attempt` calls on one SQLite store
//! share a transaction, so the outbox's write rate is not one commit per delivery.
//!
//! The first caller to find no flush running starts one on the blocking pool; it takes every
//! queued job, runs each in its own savepoint (one bad job cannot undo the others), commits,
//! and only then answers the callers, so an answer always means "durably recorded". Jobs
//! queued meanwhile go into the next round of the same flush.

use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Utc};
use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::oneshot;

use super::sqlite::record_one;
use crate::error::{Error, Result};
use crate::model::{Attempt, DeliveryId, Next};

/// One attempt to record.
pub(super) struct AttemptJob {
    pub(super) delivery: DeliveryId,
    pub(super) attempt: Attempt,
    pub(super) next: Next,
}

type Answer = oneshot::Sender<Result<Option<DateTime<Utc>>>>;

#[derive(Default)]
struct Queue {
    jobs: Vec<(AttemptJob, Answer)>,
    flushing: bool,
}

/// The queue of attempts waiting for a commit.
#[derive(Default)]
pub(super) struct AttemptBatch {
    queue: Mutex<Queue>,
}

impl AttemptBatch {
    pub(super) async fn record(
        self: &Arc<Self>,
        conn: &Arc<Mutex<Connection>>,
        job: AttemptJob,
    ) -> Result<Option<DateTime<Utc>>> {
        let (answer, answered) = oneshot::channel();
        let start_flush = {
            let mut q = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
            q.jobs.push((job, answer));
            !std::mem::replace(&mut q.flushing, true)
        };
        if start_flush {
            let batch = Arc::clone(self);
            let conn = Arc::clone(conn);
            // Not awaited: callers wait on their own answers. A panic in the flush drops
            // the senders, which the callers see as `StoreWorker`.
            drop(tokio::task::spawn_blocking(move || batch.flush(&conn)));
        }
        answered.await.map_err(|_| Error::StoreWorker)?
    }

    fn flush(&self, conn: &Mutex<Connection>) {
        loop {
            let jobs = {
                let mut q = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
                if q.jobs.is_empty() {
                    q.flushing = false;
                    return;
                }
                std::mem::take(&mut q.jobs)
            };
            let mut conn = conn.lock().unwrap_or_else(PoisonError::into_inner);
            match commit_round(&mut conn, &jobs) {
                Ok(results) => {
                    for ((_, answer), result) in jobs.into_iter().zip(results) {
                        let _ = answer.send(result);
                    }
                }
                Err(e) => {
                    let text = e.to_string();
                    for (_, answer) in jobs {
                        let _ = answer.send(Err(Error::BatchCommit(text.clone())));
                    }
                }
            }
        }
    }
}

/// Runs every job in its own savepoint inside one transaction; the outer error is for the
/// transaction itself (begin or commit), the inner ones per job. The savepoint statements
/// are prepared once per connection (rusqlite's `Savepoint` parses its SQL every time).
fn commit_round(
    conn: &mut Connection,
    jobs: &[(AttemptJob, Answer)],
) -> Result<Vec<Result<Option<DateTime<Utc>>>>> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut results = Vec::with_capacity(jobs.len());
    for (job, _) in jobs {
        tx.prepare_cached("SAVEPOINT attempt")?.execute([])?;
        let result = record_one(&tx, job);
        if result.is_err() {
            // Undo this job's writes only; the savepoint itself is released below.
            tx.prepare_cached("ROLLBACK TO attempt")?.execute([])?;
        }
        tx.prepare_cached("RELEASE attempt")?.execute([])?;
        results.push(result);
    }
    tx.commit()?;
    Ok(results)
}
