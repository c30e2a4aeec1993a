//! Why the workers stop early: a pause request, Ctrl-C, another worker's
//! failure, or the plan's lock lost. Set once; checked between batches.

use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HaltReason {
    Paused,
    Interrupted,
    Failed,
    /// The process lost its plan's lock.
    LockLost,
}

/// Shared by the workers and the coordinator of one run.
#[derive(Debug, Default)]
pub struct Halt {
    reason: AtomicU8,
    notify: Notify,
}

impl Halt {
    /// The first reason wins.
    pub fn set(&self, reason: HaltReason) {
        let code = match reason {
            HaltReason::Paused => 1,
            HaltReason::Interrupted => 2,
            HaltReason::Failed => 3,
            HaltReason::LockLost => 4,
        };
        let _ = self
            .reason
            .compare_exchange(0, code, Ordering::SeqCst, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    pub fn reason(&self) -> Option<HaltReason> {
        match self.reason.load(Ordering::SeqCst) {
            1 => Some(HaltReason::Paused),
            2 => Some(HaltReason::Interrupted),
            3 => Some(HaltReason::Failed),
            4 => Some(HaltReason::LockLost),
            _ => None,
        }
    }

    pub fn is_set(&self) -> bool {
        self.reason().is_some()
    }

    /// Sleep, waking early if a halt is set.
    pub async fn sleep(&self, duration: Duration) {
        let notified = self.notify.notified();
        if self.is_set() {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(duration) => {}
            _ = notified => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn first_reason_wins_and_wakes_sleepers() {
        let halt = Halt::default();
        assert_eq!(halt.reason(), None);
        let started = std::time::Instant::now();
        tokio::join!(halt.sleep(Duration::from_secs(5)), async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            halt.set(HaltReason::Paused);
        });
        assert!(started.elapsed() < Duration::from_secs(2));
        halt.set(HaltReason::Interrupted);
        assert_eq!(halt.reason(), Some(HaltReason::Paused));
    }
}
