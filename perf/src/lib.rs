//! Rill's benchmarks and stress tools, shared by the `rill-perf` binary and its tests.
//!
//! `storage_bench` measures raw O_DIRECT bandwidth and the log's append throughput in one run;
//! `ack_writer` appends forever and reports every acknowledged batch, for crash tests;
//! `bench` is the `rill bench` load generator (workloads in `workload`).

mod ack_writer;
mod bench;
mod bench_group;
mod client;
mod kafka_client;
mod native_client;
mod plot;
mod storage_bench;
mod transport_bench;
mod workload;

pub use crate::ack_writer::{AckWriterArgs, ack_payload, run_ack_writer};
pub use crate::bench::{BenchArgs, BenchResult, Percentiles, print_table, run_bench, run_bench_and_print};
pub use crate::storage_bench::{StorageBenchArgs, run_storage_bench};
pub use crate::transport_bench::{
    TransportBenchArgs, TransportFigures, measure_transports, run_transport_bench,
};
pub use crate::workload::{Keys, Workload, WorkloadArgs};

/// Runs `f` on one glommio executor pinned to CPU 0 with a small io_memory.
pub fn on_executor<F, Fut, T>(f: F) -> anyhow::Result<T>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T> + 'static,
    T: Send + 'static,
{
    rill_storage::retain_dma_buffer_memory(64 << 20);
    let handle = glommio::LocalExecutorBuilder::new(glommio::Placement::Fixed(0))
        .io_memory(2 << 20)
        .name("rill-perf")
        .spawn(f)
        .map_err(|e| anyhow::anyhow!("starting the executor: {e}"))?;
    handle.join().map_err(|e| anyhow::anyhow!("executor thread failed: {e:?}"))
}

/// Runs `f` on one glommio executor that is not pinned (the load generator shares the host
/// with the broker it measures).
pub fn on_executor_unpinned<F, Fut, T>(f: F) -> anyhow::Result<T>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T> + 'static,
    T: Send + 'static,
{
    let handle = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(1 << 20)
        .name("rill-bench")
        .spawn(f)
        .map_err(|e| anyhow::anyhow!("starting the executor: {e}"))?;
    handle.join().map_err(|e| anyhow::anyhow!("executor thread failed: {e:?}"))
}
