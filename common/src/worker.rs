//! A thread that owns some state and drains a channel: the encoder's and the decoder's model
//! threads and the server's indexing thread. Dropping the [`Worker`] closes the channel and
//! joins the thread, so whatever was queued is finished first.

use crossbeam_channel::{bounded, unbounded, Receiver, SendError, Sender, TrySendError};
use std::thread::JoinHandle;

/// A named worker thread fed through a channel of `T`.
pub struct Worker<T> {
    tx: Option<Sender<T>>,
    handle: Option<JoinHandle<()>>,
}

impl<T: Send + 'static> Worker<T> {
    /// Starts thread `name` running `run` over the receiving end of a channel holding at most
    /// `capacity` waiting items (`None`: unbounded).
    pub fn spawn(
        name: &str,
        capacity: Option<usize>,
        run: impl FnOnce(Receiver<T>) + Send + 'static,
    ) -> std::io::Result<Self> {
        let (tx, rx) = match capacity {
            Some(n) => bounded(n.max(1)),
            None => unbounded(),
        };
        let handle = std::thread::Builder::new().name(name.into()).spawn(move || run(rx))?;
        Ok(Worker { tx: Some(tx), handle: Some(handle) })
    }

    /// Sends `item`, waiting for room; fails when the thread has stopped.
    pub fn send(&self, item: T) -> Result<(), SendError<T>> {
        match &self.tx {
            Some(tx) => tx.send(item),
            None => Err(SendError(item)),
        }
    }

    /// Sends `item` unless the channel is full or the thread has stopped.
    pub fn try_send(&self, item: T) -> Result<(), TrySendError<T>> {
        match &self.tx {
            Some(tx) => tx.try_send(item),
            None => Err(TrySendError::Disconnected(item)),
        }
    }

    /// Items waiting in the channel.
    pub fn queued(&self) -> usize {
        self.tx.as_ref().map_or(0, Sender::len)
    }
}

impl<T> Worker<T> {
    /// Closes the channel and waits for the thread to finish what was queued.
    /// When the last owner of the worker is dropped on the worker's own thread, it cannot wait
    /// for itself: the thread then ends on its own once the channel is closed.
    pub fn shutdown(&mut self) {
        self.tx.take();
        if let Some(h) = self.handle.take() {
            if h.thread().id() != std::thread::current().id() {
                let _ = h.join();
            }
        }
    }
}

impl<T> Drop for Worker<T> {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn drop_finishes_the_queue_then_joins() {
        let done = Arc::new(AtomicUsize::new(0));
        let d = done.clone();
        let w = Worker::spawn("test-worker", Some(4), move |rx: Receiver<usize>| {
            for n in rx {
                d.fetch_add(n, Ordering::SeqCst);
            }
        })
        .unwrap();
        for n in 1..=4 {
            w.send(n).unwrap();
        }
        drop(w);
        assert_eq!(done.load(Ordering::SeqCst), 10);
    }

    #[test]
    fn a_full_channel_is_reported() {
        let (gate_tx, gate_rx) = bounded::<()>(0);
        let w = Worker::spawn("test-full", Some(1), move |rx: Receiver<u8>| {
            let _ = gate_rx.recv();
            for _ in rx {}
        })
        .unwrap();
        w.send(1).unwrap();
        assert!(matches!(w.try_send(2), Err(TrySendError::Full(2))));
        drop(gate_tx);
    }
}
