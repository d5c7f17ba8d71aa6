//! A single-threaded wake-all event: tasks wait for "something changed", then re-check state.
//!
//! Used for group commit, back-pressure and long-polling. The log's state lives in a `RefCell`;
//! a waiter checks it, and if it must wait, awaits `Notify::changed`, which completes at the
//! next `notify_all`. Because the executor is single-threaded, nothing can run between the check
//! and the first poll of the wait, so no wake-up is missed. A waiter that gives up (a long-poll
//! timing out) removes its registration when dropped, so idle waits leave nothing behind.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// A single-threaded wake-all (see the module doc).
#[derive(Debug, Default)]
pub struct Notify {
    generation: Cell<u64>,
    next_key: Cell<u64>,
    wakers: RefCell<HashMap<u64, Waker>>,
}

impl Notify {
    /// Wakes every waiter.
    pub fn notify_all(&self) {
        self.generation.set(self.generation.get() + 1);
        let wakers: Vec<Waker> = self.wakers.borrow_mut().drain().map(|(_, w)| w).collect();
        for waker in wakers {
            waker.wake();
        }
    }

    /// Completes after the next `notify_all`.
    pub fn changed(&self) -> Changed<'_> {
        Changed { notify: self, generation: self.generation.get(), key: None }
    }

    #[cfg(test)]
    fn registered(&self) -> usize {
        self.wakers.borrow().len()
    }
}

/// The future of [`Notify::changed`].
pub struct Changed<'a> {
    notify: &'a Notify,
    generation: u64,
    key: Option<u64>,
}

impl Future for Changed<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.notify.generation.get() != self.generation {
            return Poll::Ready(());
        }
        let key = match self.key {
            Some(key) => key,
            None => {
                let key = self.notify.next_key.get();
                self.notify.next_key.set(key + 1);
                self.key = Some(key);
                key
            }
        };
        self.notify.wakers.borrow_mut().insert(key, cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for Changed<'_> {
    fn drop(&mut self) {
        if let Some(key) = self.key {
            self.notify.wakers.borrow_mut().remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Context;

    #[test]
    fn abandoned_waits_leave_nothing_registered() {
        let notify = Notify::default();
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        for _ in 0..1000 {
            let mut wait = Box::pin(notify.changed());
            assert!(wait.as_mut().poll(&mut cx).is_pending());
            assert!(wait.as_mut().poll(&mut cx).is_pending(), "a repeated poll reuses its slot");
        }
        assert_eq!(notify.registered(), 0);
        let mut wait = Box::pin(notify.changed());
        assert!(wait.as_mut().poll(&mut cx).is_pending());
        notify.notify_all();
        assert!(wait.as_mut().poll(&mut cx).is_ready());
    }
}
