//! Threads that yield to the server's others: SQL queries, and a restart's loaders.

/// Lowers the calling thread's CPU priority by `niceness` (on Linux a priority belongs to one
/// thread). Failing to is harmless: the thread keeps the server's priority.
pub fn lower(niceness: i32) {
    #[cfg(target_os = "linux")]
    {
        use rustix::process::{getpriority_process, setpriority_process};
        let thread = Some(rustix::thread::gettid());
        if let Ok(current) = getpriority_process(thread) {
            let _ = setpriority_process(thread, current + niceness);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = niceness;
}
