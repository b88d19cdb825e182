//! The `chiso` binary: see `chiso --help`.

/// The fold and the scans allocate and free millions of small values (event fields, strings,
/// batches); mimalloc does that with less time and less resident memory than the system
/// allocator (see BENCHMARKS.md, "Tables on disk", fourth step). It is also `malloc` for the
/// whole process (the `override` feature), so RocksDB's C++ allocates from it too: under
/// glibc's allocator a flushed memtable's memory stayed in the process, and the resident set
/// grew through a 30-minute soak (BENCHMARKS.md, "mimalloc for RocksDB too"). Without
/// transparent huge pages (the `no_thp` feature): mimalloc asks for them on its arenas, and
/// on a kernel that grants them on request (`madvise`, Debian's default) every first touch of
/// a 2 MiB region zeroed a huge page, often after compacting memory to find one — three
/// quarters of a start's CPU (1.4 s to ready instead of 5.1 s without them) and 60 MiB of
/// resident set (BENCHMARKS.md, "Transparent huge pages").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    chiso::run()
}
