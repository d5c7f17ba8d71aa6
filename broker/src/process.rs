//! Process-wide settings of a broker process: a panic on any thread ends the process, and the
//! open-file limit is raised to what the host allows.

/// Makes a panic on any thread (a shard's executor among them) end the whole process with exit
/// code 101 after the panic is reported (stderr, and the log): a broker with a dead shard would
/// keep accepting connections whose calls to that shard never return.
pub fn exit_on_panic() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        let thread = std::thread::current().name().unwrap_or("unnamed").to_string();
        tracing::error!(%thread, panic = %info, "a broker thread panicked; stopping the process");
        std::process::exit(101);
    }));
}

/// Raises the soft RLIMIT_NOFILE to the hard limit (segment files are kept open up to
/// [`segment_files_per_shard`], connections take one each) and returns `(before, after)`.
pub fn raise_open_file_limit() -> std::io::Result<(u64, u64)> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one rlimit into a valid pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let before = limit.rlim_cur;
    if limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max;
        // SAFETY: setrlimit reads one rlimit from a valid pointer.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok((before, limit.rlim_cur))
}

/// Segment files each shard keeps open (its `rill_storage` open-file cache): half of the
/// process's open-file limit split over the shards, the other half left to connections and
/// transient files, between 16 and 65,536.
pub fn segment_files_per_shard(shards: usize) -> usize {
    (open_file_limit() / 2 / shards.max(1)).clamp(16, 65_536)
}

/// Descriptors kept from connections for the files the broker opens besides segments (the
/// metadata and group journals, temporary files, listeners, io_uring and event descriptors).
pub const FILES_RESERVED: usize = 64;

/// Connections each shard serves at most: the profile's cap, held to the half of the
/// open-file limit that segment files leave, less [`FILES_RESERVED`], split over the shards, so
/// a client opening connections can never take the descriptors a log needs (those beyond are
/// accepted and closed at once).
pub fn connections_per_shard(shards: usize, profile_max: usize) -> usize {
    let spare = (open_file_limit() / 2).saturating_sub(FILES_RESERVED);
    (spare / shards.max(1)).clamp(1, profile_max.max(1))
}

/// The soft RLIMIT_NOFILE (1024 if it cannot be read).
fn open_file_limit() -> usize {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one rlimit into a valid pointer.
    let soft =
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 { limit.rlim_cur } else { 1024 };
    usize::try_from(soft).unwrap_or(usize::MAX)
}
