//! The `chiso` binary: see `chiso --help`.

/// The fold and the scans allocate and free millions of small values (event fields, strings,
/// batches); mimalloc does that with less time and less resident memory than the system
/// allocator (see BENCHMARKS.md, "Tables on disk", fourth step).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    chiso::run()
}
