//! Rill's benchmarks: the storage benchmark now, the `rill bench` load generator later.
