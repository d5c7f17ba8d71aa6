//! Rill's partition log: the storage engine every other part of Rill stands on.
//!
//! A [`Log`] is a directory of segment files, `<base_offset:020>.log`, each with a sparse offset
//! index (`.index`) and a time index (`.timeindex`). Entries are a 64-byte rkyv-archived header
//! (offsets, timestamps, length, epoch, crc32c) followed by the batch bytes, which the log stores
//! and returns unchanged. Writes use glommio's DMA files (io_uring, O_DIRECT) with aligned
//! buffers; appends that arrive while a write is in flight share the next one (group commit).
//!
//! This crate knows nothing of sockets or protocols; the broker composes it with `net`.

mod alloc;
mod cache;
mod checkpoint;
mod clock;
mod compaction;
mod config;
mod disk;
mod entry;
mod error;
mod flush;
mod index;
mod io_stats;
mod journal;
mod log;
mod log_start;
mod maintenance;
mod notify;
mod open_files;
mod prefetch;
mod recovery;
mod repair;
mod segment;

pub use crate::alloc::retain_dma_buffer_memory;
pub use crate::checkpoint::{CHECKPOINT_FILE, RecoveryPoint};
pub use crate::clock::{Clock, ManualClock, SystemClock};
pub use crate::compaction::{CompactionOptions, CompactionReport, Compactor, Kept, KeyedRecord};
pub use crate::config::{BLOCK_BYTES, Durability, INDEX_ENTRIES_PER_SEGMENT_MAX, LogConfig};
pub use crate::disk::{Disk, SimDisk, disk_space};
pub use crate::entry::ENTRY_HEADER_BYTES;
pub use crate::error::{Error, Result};
pub use crate::io_stats::{Histogram, IoStats, LATENCY_BOUNDS_S, io_stats};
pub use crate::journal::{JOURNAL_RECORD_BYTES_MAX, JOURNAL_RECORD_HEADER_BYTES, Journal};
pub use crate::log::{Batch, Enqueued, Log, LogStats, RetentionReport, StoredBatch};
pub use crate::log_start::LOG_START_FILE;
pub use crate::notify::{Changed, Notify};
pub use crate::open_files::{OPEN_FILES_MAX_DEFAULT, open_files_max, open_files_now, set_open_files_max};
pub use crate::repair::{
    DATA_DIR_LOCK_FILE, Damage, DataDirLock, TruncateReport, VerifyReport, truncate_dir, verify_dirs,
};
pub use crate::segment::{offset_file_name, parse_offset_file_name};
