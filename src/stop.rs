//! A stop request shared between the Ctrl-C handler and long-running work
//! (the backfill), which finishes its current batch and then stops.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;

/// Cloneable; every clone sees the same request.
#[derive(Clone, Default, Debug)]
pub struct StopSignal {
    inner: Arc<Inner>,
}

#[derive(Default, Debug)]
struct Inner {
    requested: AtomicBool,
    notify: Notify,
}

impl StopSignal {
    pub fn new() -> StopSignal {
        StopSignal::default()
    }

    /// Ask the work to stop at its next safe point.
    pub fn request(&self) {
        self.inner.requested.store(true, Ordering::SeqCst);
        self.inner.notify.notify_waiters();
    }

    pub fn is_requested(&self) -> bool {
        self.inner.requested.load(Ordering::SeqCst)
    }

    /// Resolves once a stop is requested.
    pub async fn requested(&self) {
        loop {
            let notified = self.inner.notify.notified();
            if self.is_requested() {
                return;
            }
            notified.await;
        }
    }

    /// Request a stop on the first Ctrl-C (SIGINT) or SIGTERM; exit at once
    /// (code 130) on the second, for work that has no safe point to stop at
    /// (an open transaction is rolled back when its connection closes).
    pub fn on_interrupt(&self) {
        let signal = self.clone();
        tokio::spawn(async move {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            for count in 0.. {
                interrupted(&mut term).await;
                if count > 0 {
                    eprintln!("interrupted again: stopping now");
                    std::process::exit(130);
                }
                eprintln!(
                    "stop requested: finishing the current batch (Ctrl-C again to stop at once)"
                );
                signal.request();
            }
        });
    }
}

/// The next Ctrl-C (SIGINT), or SIGTERM when `term` listens for it.
pub async fn interrupted(term: &mut Option<tokio::signal::unix::Signal>) {
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async {
            match term.as_mut() {
                Some(t) => { t.recv().await; }
                None => std::future::pending().await,
            }
        } => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waiters_wake_on_request() {
        let stop = StopSignal::new();
        let waiter = {
            let stop = stop.clone();
            tokio::spawn(async move { stop.requested().await })
        };
        assert!(!stop.is_requested());
        stop.request();
        waiter.await.unwrap();
        assert!(stop.is_requested());
    }
}
