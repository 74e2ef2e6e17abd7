//! Group commit: one task owns the write connection and commits many operations per
//! transaction.
//!
//! SQLite allows one writer at a time, and with `synchronous=FULL` every commit is an fsync.
//! Operations (publishes, claims, acks, retries) are sent to the writer as jobs. The writer
//! takes every job waiting, runs them in one `BEGIN IMMEDIATE` transaction, each inside its own
//! savepoint so that one failing job does not undo the others, commits once, and only then
//! answers each job. While a commit is on its way to disk new jobs pile up, so under load the
//! batches grow by themselves and the fsync cost is shared; an idle store commits a lone job
//! at once, with no added delay.

use std::collections::HashSet;
use std::sync::Arc;

use futures::future::BoxFuture;
use sqlx::{Connection, SqliteConnection};
use tokio::sync::{mpsc, oneshot};

use crate::error::{Error, Result};
use crate::reserve;
use crate::routes::Routes;
use crate::signal::Signals;

/// What a job sees: the connection, inside the batch's transaction.
pub(crate) struct Batch {
    pub(crate) conn: SqliteConnection,
    pub(crate) routes: Routes,
    pub(crate) require_route: bool,
    /// Subscriptions with new ready messages once this batch commits.
    wake: HashSet<Arc<str>>,
    /// Set when any job changed `tidings_outbox`.
    pub(crate) outbox_changed: bool,
    /// The store is full: publishes are refused until consumers have made room.
    pub(crate) full: bool,
    /// A publish of this batch hit the size limit.
    pub(crate) hit_full: bool,
    /// See [`reserve`].
    pub(crate) reserve_file: std::path::PathBuf,
}

impl Batch {
    /// Consumers of `subscription` are woken when the batch commits.
    pub(crate) fn wake(&mut self, subscription: &str) {
        if !self.wake.contains(subscription) {
            self.wake.insert(subscription.into());
        }
    }

    /// The subscriptions bound to `topic`, reloading the bindings if another connection
    /// changed them.
    pub(crate) async fn route(&mut self, topic: &str) -> Result<Vec<Arc<str>>> {
        self.routes.refresh(&mut self.conn).await?;
        Ok(self.routes.matching(topic))
    }
}

type Work<T> = Box<dyn for<'c> FnOnce(&'c mut Batch) -> BoxFuture<'c, Result<T>> + Send>;

trait Job: Send {
    /// Runs the work; `false` when it failed (its output holds the error).
    fn run<'c>(&'c mut self, batch: &'c mut Batch) -> BoxFuture<'c, bool>;
    /// Answers the caller: with the job's own error if it failed, else with the commit's.
    fn finish(self: Box<Self>, commit: &Result<()>);
}

struct Task<T> {
    work: Option<Work<T>>,
    output: Option<Result<T>>,
    reply: Option<oneshot::Sender<Result<T>>>,
}

impl<T: Send + 'static> Job for Task<T> {
    fn run<'c>(&'c mut self, batch: &'c mut Batch) -> BoxFuture<'c, bool> {
        let work = self.work.take().expect("a job runs once");
        Box::pin(async move {
            let output = work(batch).await;
            let ok = output.is_ok();
            self.output = Some(output);
            ok
        })
    }

    fn finish(mut self: Box<Self>, commit: &Result<()>) {
        let result = match (self.output.take(), commit) {
            (Some(Err(e)), _) => Err(e),
            (Some(Ok(_)), Err(e)) | (None, Err(e)) => Err(e.echo()),
            (Some(Ok(v)), Ok(())) => Ok(v),
            (None, Ok(())) => Err(Error::Closed),
        };
        if let Some(reply) = self.reply.take() {
            let _ = reply.send(result);
        }
    }
}

/// A handle to the writer task. Cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct Writer {
    jobs: mpsc::UnboundedSender<Box<dyn Job>>,
}

impl Writer {
    /// Starts the writer task on `batch`'s connection.
    pub(crate) fn spawn(batch: Batch, max_batch: usize, signals: Arc<Signals>) -> Self {
        let (jobs, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(batch, rx, max_batch, signals));
        Self { jobs }
    }

    /// Runs `work` in the next batch and returns its output once the batch is committed.
    ///
    /// The work is boxed before the returned future exists, so that the future holds nothing
    /// but the answer channel (and is `Send` whatever the closure borrows from its batch).
    pub(crate) fn submit<T, F>(&self, work: F) -> impl Future<Output = Result<T>> + Send + 'static
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut Batch) -> BoxFuture<'c, Result<T>> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let task = Task {
            work: Some(Box::new(work) as Work<T>),
            output: None,
            reply: Some(reply),
        };
        let sent = self.jobs.send(Box::new(task)).is_ok();
        async move {
            if !sent {
                return Err(Error::Closed);
            }
            answer.await.map_err(|_| Error::Closed)?
        }
    }

    /// Runs `work` in the next batch without waiting for it (for `Drop`).
    pub(crate) fn detach<F>(&self, work: F)
    where
        F: for<'c> FnOnce(&'c mut Batch) -> BoxFuture<'c, Result<()>> + Send + 'static,
    {
        let task = Task {
            work: Some(Box::new(work) as Work<()>),
            output: None,
            reply: None,
        };
        let _ = self.jobs.send(Box::new(task));
    }
}

async fn run(
    mut batch: Batch,
    mut rx: mpsc::UnboundedReceiver<Box<dyn Job>>,
    max_batch: usize,
    signals: Arc<Signals>,
) {
    let mut jobs: Vec<Box<dyn Job>> = Vec::with_capacity(max_batch);
    while rx.recv_many(&mut jobs, max_batch).await > 0 {
        let commit = run_batch(&mut batch, &mut jobs).await;
        if commit.is_ok() {
            for subscription in batch.wake.drain() {
                signals.wake(&subscription);
            }
            if std::mem::take(&mut batch.outbox_changed) {
                signals.wake_outbox();
            }
        } else {
            batch.wake.clear();
            batch.outbox_changed = false;
            // The transaction may have bindings half-loaded: reload next time.
            batch.routes.invalidate();
        }
        for job in jobs.drain(..) {
            job.finish(&commit);
        }
        // A full disk often shows at commit, when the WAL grows.
        let hit_full = std::mem::take(&mut batch.hit_full) || matches!(commit, Err(Error::Full));
        if hit_full && !batch.full {
            batch.full = true;
            reserve::release(&mut batch.conn, &batch.reserve_file).await;
        }
        if batch.full {
            // While full, fold the WAL back into the file after every batch: the WAL only
            // grows between checkpoints, and draining writes too.
            reserve::checkpoint(&mut batch.conn).await;
            if reserve::restore(&mut batch.conn, &batch.reserve_file).await {
                batch.full = false;
            }
        }
    }
    let _ = batch.conn.close().await;
}

/// Runs the jobs in one transaction. A failed job rolls back to its savepoint and fails alone;
/// the result is the commit's.
async fn run_batch(batch: &mut Batch, jobs: &mut [Box<dyn Job>]) -> Result<()> {
    batch.routes.begin_batch();
    sqlx::raw_sql("BEGIN IMMEDIATE")
        .execute(&mut batch.conn)
        .await?;
    for job in jobs.iter_mut() {
        if let Err(e) = sqlx::raw_sql("SAVEPOINT job")
            .execute(&mut batch.conn)
            .await
        {
            rollback(batch).await;
            return Err(e.into());
        }
        let step = if job.run(batch).await {
            "RELEASE job"
        } else {
            "ROLLBACK TO job; RELEASE job"
        };
        if let Err(e) = sqlx::raw_sql(step).execute(&mut batch.conn).await {
            rollback(batch).await;
            return Err(e.into());
        }
    }
    match sqlx::raw_sql("COMMIT").execute(&mut batch.conn).await {
        Ok(_) => Ok(()),
        Err(e) => {
            rollback(batch).await;
            Err(e.into())
        }
    }
}

async fn rollback(batch: &mut Batch) {
    if let Err(e) = sqlx::raw_sql("ROLLBACK").execute(&mut batch.conn).await {
        tracing::debug!(error = %e, "rollback after a failed batch");
    }
}

impl Batch {
    pub(crate) fn new(
        conn: SqliteConnection,
        require_route: bool,
        reserve_file: std::path::PathBuf,
    ) -> Self {
        Self {
            conn,
            routes: Routes::default(),
            require_route,
            wake: HashSet::new(),
            outbox_changed: false,
            full: false,
            hit_full: false,
            reserve_file,
        }
    }
}
