//! Per-token quotas — `limits` of `POST /v1/tokens`, or the server's defaults: `queries` at
//! once, `rows_per_minute` returned, `appends_per_second` events. Over a limit the answer is
//! 429 with `Retry-After` and a code; `/metrics` counts each token's queries, rows, events and
//! refusals by its id.

use crate::error::{ApiError, ErrorKind, Result};
use chiso_ingest::TokenLimits;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde_json::json;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// What `/metrics` counts per token.
#[derive(Clone, Default)]
pub struct QuotaMetrics {
    queries: Family<TokenLabels, Counter>,
    rows: Family<TokenLabels, Counter>,
    events: Family<TokenLabels, Counter>,
    refused: Family<RefusalLabels, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabels {
    token: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusalLabels {
    token: String,
    code: &'static str,
}

impl QuotaMetrics {
    /// Registers `chiso_token_queries`, `chiso_token_rows`, `chiso_token_events` and
    /// `chiso_token_refusals` (each a counter by token id).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "chiso_token_queries",
            "Queries begun, by token id",
            self.queries.clone(),
        );
        registry.register(
            "chiso_token_rows",
            "Rows returned by queries, by token id",
            self.rows.clone(),
        );
        registry.register(
            "chiso_token_events",
            "Events appended, by token id",
            self.events.clone(),
        );
        registry.register(
            "chiso_token_refusals",
            "Requests refused with 429 for a token's limits, by token id and code",
            self.refused.clone(),
        );
    }
}

/// A token bucket that may go into debt: it refills at `rate` a second up to `capacity`, a use
/// is allowed while anything is left and takes all it needs. A query's rows are known only as
/// they come, and one append may hold more than a second's events: the debt makes later
/// requests wait, so over any long span use stays within the rate.
struct Bucket {
    capacity: f64,
    rate: f64,
    state: Mutex<(f64, Instant)>,
}

impl Bucket {
    fn new(amount: u64, per: Duration) -> Self {
        let capacity = amount as f64;
        Self {
            capacity,
            rate: capacity / per.as_secs_f64(),
            state: Mutex::new((capacity, Instant::now())),
        }
    }

    /// The level now, refilled since it was last looked at.
    fn refill(&self, state: &mut (f64, Instant)) -> f64 {
        let now = Instant::now();
        let refilled = state.0 + now.duration_since(state.1).as_secs_f64() * self.rate;
        *state = (refilled.min(self.capacity), now);
        state.0
    }

    /// `Err(seconds to wait)` until it holds at least one unit again (it may be in debt).
    fn check(&self) -> std::result::Result<(), u64> {
        let mut state = self.state.lock().expect("bucket lock");
        let level = self.refill(&mut state);
        match level >= 1.0 {
            true => Ok(()),
            false => Err(((1.0 - level) / self.rate).ceil().max(1.0) as u64),
        }
    }

    fn take(&self, amount: u64) {
        let mut state = self.state.lock().expect("bucket lock");
        self.refill(&mut state);
        state.0 -= amount as f64;
    }
}

/// One token's limits and what it uses of them, shared by its requests on every protocol.
pub struct TokenQuota {
    token: String,
    queries: Option<u32>,
    running: AtomicU32,
    rows: Option<Bucket>,
    appends: Option<Bucket>,
    metrics: Arc<OnceLock<QuotaMetrics>>,
}

impl TokenQuota {
    /// The quota of token `token` with `limits` (absent ones from `defaults`).
    pub(crate) fn new(
        token: &str,
        limits: TokenLimits,
        defaults: TokenLimits,
        metrics: Arc<OnceLock<QuotaMetrics>>,
    ) -> Self {
        let rows = limits.rows_per_minute.or(defaults.rows_per_minute);
        let appends = limits.appends_per_second.or(defaults.appends_per_second);
        Self {
            token: token.to_owned(),
            queries: limits.queries.or(defaults.queries),
            running: AtomicU32::new(0),
            rows: rows.map(|rows| Bucket::new(rows, Duration::from_secs(60))),
            appends: appends.map(|n| Bucket::new(n.into(), Duration::from_secs(1))),
            metrics,
        }
    }

    fn labels(&self) -> TokenLabels {
        TokenLabels {
            token: self.token.clone(),
        }
    }

    fn count(&self, family: impl Fn(&QuotaMetrics) -> &Family<TokenLabels, Counter>, n: u64) {
        if let Some(metrics) = self.metrics.get() {
            family(metrics).get_or_create(&self.labels()).inc_by(n);
        }
    }

    fn refused(&self, code: &'static str) {
        if let Some(metrics) = self.metrics.get() {
            let labels = RefusalLabels {
                token: self.token.clone(),
                code,
            };
            metrics.refused.get_or_create(&labels).inc();
        }
    }

    /// Takes an append's events (counted only when the token has an append rate) from the
    /// token's rate, or 429 `append_quota_exceeded` while it is spent.
    pub(crate) fn append(&self, events: impl FnOnce() -> usize) -> Result<()> {
        let Some(bucket) = &self.appends else {
            return Ok(());
        };
        if let Err(retry_after_secs) = bucket.check() {
            self.refused("append_quota_exceeded");
            let message = format!(
                "this token may append {} events a second and has used them: retry in {retry_after_secs} s",
                bucket.capacity
            );
            return Err(
                ApiError::new(ErrorKind::Overloaded, "append_quota_exceeded", message)
                    .with_details(json!({"retry_after_secs": retry_after_secs})),
            );
        }
        bucket.take(events() as u64);
        Ok(())
    }

    /// Counts `events` the token appended.
    pub(crate) fn appended(&self, events: usize) {
        self.count(|m| &m.events, events as u64);
    }
}

impl chiso_query::Quota for TokenQuota {
    fn begin(&self) -> chiso_query::Result<()> {
        let exceeded = |code, message, retry_after_secs| {
            self.refused(code);
            Err(chiso_query::Error::QuotaExceeded {
                code,
                message,
                retry_after_secs,
            })
        };
        if let Some(bucket) = &self.rows {
            if let Err(wait) = bucket.check() {
                let message = format!(
                    "this token may read {} rows a minute and has read them: retry in {wait} s",
                    bucket.capacity
                );
                return exceeded("row_quota_exceeded", message, wait);
            }
        }
        if let Some(limit) = self.queries {
            let admitted =
                self.running
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |running| {
                        (running < limit).then_some(running + 1)
                    });
            if admitted.is_err() {
                let message = format!(
                    "this token may run {limit} queries at once and runs {limit}: wait for one to end"
                );
                return exceeded("too_many_queries", message, 1);
            }
        }
        self.count(|m| &m.queries, 1);
        Ok(())
    }

    fn rows(&self, rows: u64) {
        if let Some(bucket) = &self.rows {
            bucket.take(rows);
        }
        self.count(|m| &m.rows, rows);
    }

    fn end(&self) {
        if self.queries.is_some() {
            self.running.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_in_debt_waits_until_it_is_paid_off() {
        let bucket = Bucket::new(60, Duration::from_secs(60));
        assert_eq!(bucket.check(), Ok(()));
        bucket.take(150);
        // 90 rows of debt at one a second, and one more to have any.
        assert_eq!(bucket.check(), Err(91));
    }
}
