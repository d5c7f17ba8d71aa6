//! Process-wide allocator settings for DMA buffers.
//!
//! glommio allocates DMA buffers larger than its registered io_memory with the global allocator.
//! With glibc's defaults, multi-MiB buffers are mmap'ed and unmapped on every write, and the
//! page faults that follow cost as much CPU as copying the data. Raising the mmap and trim
//! thresholds keeps those pages mapped and reused.

/// Makes glibc serve allocations up to `bytes_max` from its heap and keep freed memory mapped.
/// Call once at process start, before the executors run; a no-op where unsupported.
pub fn retain_dma_buffer_memory(bytes_max: usize) {
    let bytes = i32::try_from(bytes_max).unwrap_or(i32::MAX);
    // SAFETY: mallopt only changes allocator tunables; it is called before other threads
    // allocate, and any value is accepted or rejected by glibc itself.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, bytes);
        libc::mallopt(libc::M_TRIM_THRESHOLD, bytes.saturating_mul(4));
    }
}
