//! The `chiso` binary: see `chiso --help`.

/// The fold and the scans allocate and free millions of small values (event fields, strings,
/// batches); mimalloc does that with less time and less resident memory than the system
/// allocator (see BENCHMARKS.md, "Tables on disk", fourth step). It is also `malloc` for the
/// whole process (the `override` feature), so RocksDB's C++ allocates from it too: under
/// glibc's allocator a flushed memtable's memory stayed in the process, and the resident set
/// grew through a 30-minute soak (BENCHMARKS.md, "mimalloc for RocksDB too").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    chiso::run()
}
