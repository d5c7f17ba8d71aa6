//! A single-threaded wake-all event: tasks wait for "something changed", then re-check state.
//!
//! Used for group commit. The log's state lives in a `RefCell`; a waiter checks it, and if it must
//! wait, awaits `Notify::changed`, which completes at the next `notify_all`. Because the executor
//! is single-threaded, nothing can run between the check and the first poll of the wait, so no
//! wake-up is missed.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

#[derive(Debug, Default)]
pub(crate) struct Notify {
    generation: Cell<u64>,
    wakers: RefCell<Vec<Waker>>,
}

impl Notify {
    pub fn notify_all(&self) {
        self.generation.set(self.generation.get() + 1);
        for waker in self.wakers.borrow_mut().drain(..) {
            waker.wake();
        }
    }

    /// Completes after the next `notify_all`.
    pub fn changed(&self) -> Changed<'_> {
        Changed { notify: self, generation: self.generation.get() }
    }
}

pub(crate) struct Changed<'a> {
    notify: &'a Notify,
    generation: u64,
}

impl Future for Changed<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.notify.generation.get() != self.generation {
            return Poll::Ready(());
        }
        self.notify.wakers.borrow_mut().push(cx.waker().clone());
        Poll::Pending
    }
}
