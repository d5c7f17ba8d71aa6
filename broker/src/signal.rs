//! A one-shot, single-threaded signal: many tasks wait, one `fire` wakes them all, and a waiter
//! that gives up (its future dropped) leaves nothing behind. Used for "the shard is stopping"
//! and "this connection's writer failed", so idle connections sleep instead of polling.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

#[derive(Debug, Default)]
pub(crate) struct Signal {
    fired: Cell<bool>,
    next_key: Cell<u64>,
    wakers: RefCell<HashMap<u64, Waker>>,
}

impl Signal {
    pub fn fire(&self) {
        self.fired.set(true);
        let wakers: Vec<Waker> = self.wakers.borrow_mut().drain().map(|(_, w)| w).collect();
        for waker in wakers {
            waker.wake();
        }
    }

    pub fn is_fired(&self) -> bool {
        self.fired.get()
    }

    /// Completes once the signal has fired.
    pub fn wait(&self) -> Wait<'_> {
        Wait { signal: self, key: None }
    }
}

pub(crate) struct Wait<'a> {
    signal: &'a Signal,
    key: Option<u64>,
}

impl Future for Wait<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.signal.fired.get() {
            return Poll::Ready(());
        }
        let signal = self.signal;
        let key = *self.key.get_or_insert_with(|| {
            let key = signal.next_key.get();
            signal.next_key.set(key + 1);
            key
        });
        self.signal.wakers.borrow_mut().insert(key, cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for Wait<'_> {
    fn drop(&mut self) {
        if let Some(key) = self.key {
            self.signal.wakers.borrow_mut().remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_once_for_all_and_forgets_abandoned_waits() {
        let signal = Signal::default();
        let mut cx = Context::from_waker(Waker::noop());
        for _ in 0..100 {
            let mut wait = Box::pin(signal.wait());
            assert!(wait.as_mut().poll(&mut cx).is_pending());
        }
        assert!(signal.wakers.borrow().is_empty());
        let mut a = Box::pin(signal.wait());
        let mut b = Box::pin(signal.wait());
        assert!(a.as_mut().poll(&mut cx).is_pending() && b.as_mut().poll(&mut cx).is_pending());
        signal.fire();
        assert!(a.as_mut().poll(&mut cx).is_ready() && b.as_mut().poll(&mut cx).is_ready());
        assert!(Box::pin(signal.wait()).as_mut().poll(&mut cx).is_ready(), "late waiters see it too");
    }
}
