//! Prometheus instruments the writer updates; the binary registers them with its registry.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

/// Counters and histograms of the log's writer. Cloning shares the same instruments.
#[derive(Clone)]
pub struct StoreMetrics {
    /// Atomic append units taken by the writer (one HTTP append or NDJSON batch each).
    pub append_requests: Counter,
    /// Append units refused (conflicts, invalid input, unavailable).
    pub append_failures: Counter,
    /// Events written.
    pub events_appended: Counter,
    /// Group commits: one `WriteBatch` and one fsync each.
    pub fsync_batches: Counter,
    /// Events per group commit.
    pub fsync_batch_events: Histogram,
    /// Seconds per synced write.
    pub fsync_seconds: Histogram,
    /// The next global position (the number of events in the log).
    pub head_position: Gauge<u64, AtomicU64>,
    /// Free bytes on the log's filesystem, as the last commit found them.
    pub disk_free_bytes: Gauge<u64, AtomicU64>,
    /// Position below which the stream, category and id indexes are on disk (the rest is in
    /// memory): `head_position` minus it is the indexer's lag.
    pub indexed_position: Gauge<u64, AtomicU64>,
    /// Events the write model replayed at open: the tail its stored states did not include.
    pub replayed_at_open: Gauge<u64, AtomicU64>,
    /// Position below which every chunk has its chain hash: `head_position` minus it is the
    /// chain's lag (the whole log, while an older log is first chained).
    pub chained_position: Gauge<u64, AtomicU64>,
}

impl Default for StoreMetrics {
    fn default() -> Self {
        Self {
            append_requests: Counter::default(),
            append_failures: Counter::default(),
            events_appended: Counter::default(),
            fsync_batches: Counter::default(),
            fsync_batch_events: Histogram::new(exponential_buckets(1.0, 4.0, 10)),
            fsync_seconds: Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
            head_position: Gauge::default(),
            disk_free_bytes: Gauge::default(),
            indexed_position: Gauge::default(),
            replayed_at_open: Gauge::default(),
            chained_position: Gauge::default(),
        }
    }
}

impl StoreMetrics {
    /// Registers every instrument under `chiso_log_*`.
    pub fn register(&self, registry: &mut Registry) {
        let sub = registry.sub_registry_with_prefix("chiso_log");
        sub.register(
            "append_requests",
            "Append units taken by the writer",
            self.append_requests.clone(),
        );
        sub.register(
            "append_failures",
            "Append units refused",
            self.append_failures.clone(),
        );
        sub.register(
            "events_appended",
            "Events written to the log",
            self.events_appended.clone(),
        );
        sub.register(
            "fsync_batches",
            "Group commits (one synced write batch each)",
            self.fsync_batches.clone(),
        );
        sub.register(
            "fsync_batch_events",
            "Events per group commit",
            self.fsync_batch_events.clone(),
        );
        sub.register(
            "fsync_seconds",
            "Duration of one synced write batch",
            self.fsync_seconds.clone(),
        );
        sub.register(
            "head_position",
            "Next global position (events in the log)",
            self.head_position.clone(),
        );
        sub.register(
            "disk_free_bytes",
            "Free bytes on the log's filesystem at the last commit (appends stop at the reserve)",
            self.disk_free_bytes.clone(),
        );
        sub.register(
            "indexed_position",
            "Position below which the stream, category and id indexes are on disk",
            self.indexed_position.clone(),
        );
        sub.register(
            "replayed_at_open",
            "Events the write model replayed at open (those its stored states did not include)",
            self.replayed_at_open.clone(),
        );
        sub.register(
            "chained_position",
            "Position below which every chunk has its hash in the log's hash chain",
            self.chained_position.clone(),
        );
    }
}
