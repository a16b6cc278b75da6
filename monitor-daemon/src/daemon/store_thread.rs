//! The store thread: the one owner of the store. Batches in, one transaction each. At most one
//! batch is in flight: while the store is busy (a slow disk), changes stay marked in the model
//! and go into the next batch, so nothing queues without bound and nothing is lost; a batch
//! whose write failed is kept and written with the next.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc as std_mpsc,
    },
    thread::JoinHandle,
    time::Instant,
};

use tokio::sync::oneshot;

use super::{container::Batch, model::Shared, store::Store};

/// A batch, and who to tell once it is written.
type Job = (Batch, Option<oneshot::Sender<()>>);

/// The handle of the running store thread.
pub struct StoreThread {
    jobs: std_mpsc::Sender<Job>,
    busy: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl StoreThread {
    /// Starts the thread.
    pub fn spawn(store: Store, shared: Arc<Shared>) -> std::io::Result<StoreThread> {
        let (jobs, rx) = std_mpsc::channel::<Job>();
        let busy = Arc::new(AtomicBool::new(false));
        let done = busy.clone();
        let thread = std::thread::Builder::new()
            .name("capmon-store".into())
            .spawn(move || write_batches(store, &shared, &rx, &done))?;
        Ok(StoreThread { jobs, busy, thread })
    }

    /// Sends the model's changes unless the last batch is still being written (then they stay
    /// marked in the model for the next one).
    pub fn offer(&self, shared: &Shared) {
        if self.busy.swap(true, Ordering::AcqRel) {
            tracing::debug!("the store is still writing the last batch; deferring");
            return;
        }
        let batch = shared
            .model
            .lock()
            .map(|mut m| m.batch())
            .unwrap_or_default();
        let _ = self.jobs.send((batch, None));
    }

    /// Writes the model's last changes, waits for the write (2 s at most), and stops the
    /// thread.
    pub async fn flush_and_stop(self, shared: &Shared) {
        let batch = shared
            .model
            .lock()
            .map(|mut m| m.batch())
            .unwrap_or_default();
        let (flushed_tx, flushed_rx) = oneshot::channel();
        let _ = self.jobs.send((batch, Some(flushed_tx)));
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), flushed_rx).await;
        drop(self.jobs);
        let _ = self.thread.join();
    }
}

fn write_batches(store: Store, shared: &Shared, rx: &std_mpsc::Receiver<Job>, busy: &AtomicBool) {
    let mut store = store;
    let mut pending: Option<Batch> = None;
    while let Ok((batch, done)) = rx.recv() {
        let batch = match pending.take() {
            Some(mut p) => {
                p.extend(batch);
                p
            }
            None => batch,
        };
        if !batch.is_empty() {
            let t = Instant::now();
            match store.write(&batch) {
                Ok(()) => shared.health.store_write.observe(t.elapsed().as_secs_f64()),
                Err(e) => {
                    tracing::error!("{e}; the batch is kept and retried");
                    shared.health.store_errors.fetch_add(1, Ordering::Relaxed);
                    pending = Some(batch);
                }
            }
        }
        busy.store(false, Ordering::Release);
        if let Some(done) = done {
            let _ = done.send(());
        }
    }
}
