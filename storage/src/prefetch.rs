//! Sequential read-ahead of a segment's bytes for readers catching up from disk.
//!
//! A catch-up reader walks a segment front to back. Reading it one request at a time leaves the
//! disk idle while each read is copied, checked and sent. The prefetcher splits a segment into
//! aligned chunks of `read_chunk_bytes` and keeps the next few chunks past the reader's position
//! loading, so the disk always has work queued. A chunk is loaded only when it lies wholly below
//! the segment's written length (those bytes never change except by truncation, which drops
//! every chunk), and a shard holds at most [`SHARD_BYTES_MAX`] of loaded or loading chunks.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;

use bytes::Bytes;
use glommio::task::JoinHandle;

use crate::open_files::FileHandle;

/// Bytes of chunks one shard (thread) may hold loaded or loading, over all its segments.
pub(crate) const SHARD_BYTES_MAX: usize = 64 << 20;

thread_local! {
    static SHARD_BYTES: Cell<usize> = const { Cell::new(0) };
}

/// A shard-budget reservation, released when its chunk is dropped.
struct Reservation(usize);

impl Reservation {
    fn try_new(bytes: usize) -> Option<Reservation> {
        SHARD_BYTES.with(|used| {
            let now = used.get();
            (now + bytes <= SHARD_BYTES_MAX).then(|| {
                used.set(now + bytes);
                Reservation(bytes)
            })
        })
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        SHARD_BYTES.with(|used| used.set(used.get() - self.0));
    }
}

enum State {
    Loading(JoinHandle<std::io::Result<Bytes>>),
    Ready(Bytes),
}

struct Chunk {
    state: State,
    _reservation: Reservation,
}

/// The chunks of one segment.
#[derive(Default)]
pub(crate) struct Prefetcher {
    /// Chunks by index (position / chunk size).
    chunks: RefCell<BTreeMap<u64, Chunk>>,
    /// Bumped by every truncation: a chunk loaded before it may hold bytes that are gone.
    generation: Cell<u64>,
}

impl std::fmt::Debug for Prefetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prefetcher").field("chunks", &self.chunks.borrow().len()).finish()
    }
}

impl Prefetcher {
    /// Forgets every chunk (the file is being truncated).
    pub fn invalidate(&self) {
        self.generation.set(self.generation.get() + 1);
        self.chunks.borrow_mut().clear();
    }

    /// The bytes from `position` to the end of its chunk (or to `len_limit`), if that chunk is
    /// loaded or loading; loads the `ahead` chunks that follow. `None`: read the disk directly.
    pub async fn window(
        &self,
        file: &FileHandle,
        position: u64,
        len_limit: u64,
        chunk_bytes: u64,
        ahead: usize,
    ) -> Option<Bytes> {
        assert!(chunk_bytes > 0 && position < len_limit);
        let index = position / chunk_bytes;
        // Chunks behind the reader are done with.
        self.chunks.borrow_mut().retain(|&i, _| i >= index);
        self.load(file, index + 1, ahead, len_limit, chunk_bytes);
        let generation = self.generation.get();
        let taken = match self.chunks.borrow_mut().get_mut(&index) {
            None => None,
            Some(Chunk { state: State::Ready(bytes), .. }) => {
                let bytes = bytes.clone();
                return Some(slice_from(bytes, index * chunk_bytes, position)).filter(|b| !b.is_empty());
            }
            Some(chunk) => {
                // Another reader may ask for this chunk while this one waits: it reads directly.
                let placeholder = State::Ready(Bytes::new());
                match std::mem::replace(&mut chunk.state, placeholder) {
                    State::Loading(task) => Some(task),
                    State::Ready(_) => unreachable!("matched above"),
                }
            }
        };
        let task = taken?;
        let loaded = task.await.and_then(|r| r.ok());
        let mut chunks = self.chunks.borrow_mut();
        match loaded {
            Some(bytes) if self.generation.get() == generation => {
                if let Some(chunk) = chunks.get_mut(&index) {
                    chunk.state = State::Ready(bytes.clone());
                }
                Some(slice_from(bytes, index * chunk_bytes, position))
            }
            _ => {
                // Failed or raced a truncation: the direct read reports or redoes it.
                chunks.remove(&index);
                None
            }
        }
        .filter(|bytes| !bytes.is_empty())
    }

    /// Starts loading chunks `first..first + count` that lie wholly below `len_limit`, within the
    /// shard budget, skipping those already present.
    fn load(&self, file: &FileHandle, first: u64, count: usize, len_limit: u64, chunk_bytes: u64) {
        let mut chunks = self.chunks.borrow_mut();
        for index in first..first + count as u64 {
            let start = index * chunk_bytes;
            if start + chunk_bytes > len_limit {
                break;
            }
            if chunks.contains_key(&index) {
                continue;
            }
            let Some(reservation) = Reservation::try_new(chunk_bytes as usize) else { break };
            let file = file.clone();
            let len = chunk_bytes as usize;
            let task = glommio::spawn_local(async move {
                let open = file.get().await.map_err(std::io::Error::other)?;
                let read = open.read_at(start, len).await?;
                if read.len() != len {
                    let e = std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "short read");
                    return Err(e);
                }
                Ok(read)
            })
            .detach();
            chunks.insert(index, Chunk { state: State::Loading(task), _reservation: reservation });
        }
    }
}

fn slice_from(bytes: Bytes, chunk_start: u64, position: u64) -> Bytes {
    let at = (position - chunk_start) as usize;
    if at >= bytes.len() { Bytes::new() } else { bytes.slice(at..) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_are_bounded_and_released() {
        let a = Reservation::try_new(SHARD_BYTES_MAX - 10).expect("fits");
        assert!(Reservation::try_new(11).is_none());
        let b = Reservation::try_new(10).expect("fits exactly");
        drop(a);
        drop(b);
        assert_eq!(SHARD_BYTES.with(Cell::get), 0);
    }
}
