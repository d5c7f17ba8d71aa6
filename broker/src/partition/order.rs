//! The order of one connection's requests, and of the appends to one partition.
//!
//! Kafka applies a connection's requests in the order they arrived, and clients rely on it (a
//! producer with several requests in flight, a consumer committing asynchronously). Rill still
//! handles them concurrently, so that writes, fsyncs and long-polls overlap, but each request
//! first waits for its [`Order::turn`]: the previous request's *effect* has been placed (its
//! appends hold their offsets, its commit is done). A request signals [`Order::done`] as soon
//! as its own effect is placed, or when it ends, whichever comes first. A request of several
//! parts shares its order as an `Rc<Order>`, one clone per part: it is done when the last
//! clone is dropped, as each part's is once placed.
//!
//! A connection's appends are placed when their partition's [`Sequencer`] has handed out their
//! tickets: every produce takes a ticket synchronously on its first poll on the owning shard,
//! and tickets are served in the order taken. Requests that reach another shard travel over
//! the mesh, whose channels and task queue are FIFO, so a message sent first is first polled.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Poll, Waker};

use crate::signal::Signal;

/// One request's place in its connection's order.
pub(crate) struct Order {
    prev: Option<Rc<Signal>>,
    mine: Rc<Signal>,
}

impl Order {
    /// The next request's order after `last` (the previous request's, if any); `last` becomes
    /// this request's signal.
    pub fn next(last: &mut Option<Rc<Signal>>) -> Order {
        let mine = Rc::new(Signal::default());
        let prev = last.replace(mine.clone());
        Order { prev, mine }
    }

    /// Completes once the previous request's effect is placed.
    pub async fn turn(&self) {
        if let Some(prev) = &self.prev {
            prev.wait().await;
        }
    }

    /// This request's effect is placed: the next request may go.
    pub fn done(&self) {
        self.mine.fire();
    }
}

impl Drop for Order {
    fn drop(&mut self) {
        // A request that ends (or is dropped) without saying so never holds up the next one.
        self.mine.fire();
    }
}

/// Hands out tickets to a partition's appends and serves them in the order taken.
#[derive(Default)]
pub(crate) struct Sequencer {
    next: Cell<u64>,
    /// Tickets taken and not yet dropped, oldest first; the front one's turn is now.
    live: RefCell<VecDeque<u64>>,
    wakers: RefCell<Vec<Waker>>,
}

impl Sequencer {
    /// A ticket behind every ticket taken before it (synchronous: the order is fixed here).
    pub fn ticket(self: &Rc<Self>) -> Ticket {
        let number = self.next.get();
        self.next.set(number + 1);
        self.live.borrow_mut().push_back(number);
        Ticket { sequencer: self.clone(), number }
    }

    fn wake_all(&self) {
        let wakers = std::mem::take(&mut *self.wakers.borrow_mut());
        for waker in wakers {
            waker.wake();
        }
    }
}

/// A place in a [`Sequencer`]'s queue; dropping it lets the next ticket go.
pub(crate) struct Ticket {
    sequencer: Rc<Sequencer>,
    number: u64,
}

impl Ticket {
    /// Completes when every earlier ticket has been dropped.
    pub async fn turn(&self) {
        poll_fn(|cx| {
            if self.sequencer.live.borrow().front() == Some(&self.number) {
                Poll::Ready(())
            } else {
                self.sequencer.wakers.borrow_mut().push(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut live = self.sequencer.live.borrow_mut();
        let at = live.iter().position(|n| *n == self.number).expect("a live ticket is queued");
        live.remove(at);
        let front_changed = at == 0;
        drop(live);
        if front_changed {
            self.sequencer.wake_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_are_served_in_the_order_taken_even_when_one_is_abandoned() {
        glommio::LocalExecutorBuilder::default().make().unwrap().run(async {
            let sequencer = Rc::new(Sequencer::default());
            let log = Rc::new(RefCell::new(Vec::new()));
            let first = sequencer.ticket();
            let abandoned = sequencer.ticket();
            let mut tasks = Vec::new();
            for i in 0..5 {
                let ticket = sequencer.ticket();
                let log = log.clone();
                // Later tickets are polled first: order comes from the tickets.
                tasks.insert(
                    0,
                    glommio::spawn_local(async move {
                        ticket.turn().await;
                        log.borrow_mut().push(i);
                        glommio::yield_if_needed().await;
                    }),
                );
            }
            glommio::timer::sleep(std::time::Duration::from_millis(5)).await;
            assert!(log.borrow().is_empty(), "all wait behind the first ticket");
            drop(abandoned);
            first.turn().await;
            drop(first);
            for t in tasks {
                t.await;
            }
            assert_eq!(*log.borrow(), [0, 1, 2, 3, 4]);
        });
    }

    #[test]
    fn an_order_waits_for_the_previous_placement_and_for_all_its_parts() {
        glommio::LocalExecutorBuilder::default().make().unwrap().run(async {
            let mut last = None;
            let a = Rc::new(Order::next(&mut last));
            let b = Order::next(&mut last);
            let waiting = glommio::spawn_local(async move {
                b.turn().await;
            });
            let (part1, part2) = (a.clone(), a.clone());
            drop(a);
            drop(part1);
            glommio::timer::sleep(std::time::Duration::from_millis(5)).await;
            assert!(!part2.mine.is_fired(), "one of two parts placed");
            drop(part2);
            waiting.await;
            let c = Order::next(&mut last);
            drop(c);
            let d = Order::next(&mut last);
            d.turn().await; // c was dropped: d does not wait
        });
    }
}
