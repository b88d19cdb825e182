//! The hook through which domain rules run inside the log's writer: in log order and in the
//! same step as the append, so two clients resolving one dossier at once cannot both succeed.
//! The store stays domain-agnostic: it only knows that a model may refuse an event.

use crate::{AppendRequest, RecordedEvent};
use std::fmt;

/// Domain state that checks appends. The writer calls, for every group commit:
/// `begin_job` and `stage` (for each request that is not an idempotent retry) per job, then
/// `abort_job` if the job failed; after the fsync `commit_group`, or `abort_group` if the
/// write failed. A model applies staged effects at once and undoes them on abort.
pub trait WriteModel: Send + 'static {
    /// Whether the model keeps state that must be rebuilt from the log at open.
    fn needs_replay(&self) -> bool {
        true
    }
    /// Rebuilds state from one stored event, at open, in position order.
    fn replay(&mut self, event: &RecordedEvent) -> Result<(), String>;
    /// The committed state as bytes, saved at shutdown so the next open replays only the
    /// events after it. `None`: the model keeps no snapshot.
    fn snapshot(&self) -> Option<Vec<u8>> {
        None
    }
    /// Loads a [`WriteModel::snapshot`] into an empty model; an error means "replay instead".
    fn restore(&mut self, _snapshot: &[u8]) -> Result<(), String> {
        Err("this model keeps no snapshot".into())
    }
    /// A new all-or-nothing job begins.
    fn begin_job(&mut self);
    /// Checks a request against the state and what this group staged; stages it if valid.
    fn stage(&mut self, request: &AppendRequest) -> Result<(), Rejection>;
    /// The current job failed: forget what it staged.
    fn abort_job(&mut self);
    /// The group is durable: staged effects are now state.
    fn commit_group(&mut self);
    /// The group's write failed: forget everything it staged.
    fn abort_group(&mut self);
}

/// A model with no rules: every event is accepted.
#[derive(Debug, Default)]
pub struct NoRules;

impl WriteModel for NoRules {
    fn needs_replay(&self) -> bool {
        false
    }
    fn replay(&mut self, _: &RecordedEvent) -> Result<(), String> {
        Ok(())
    }
    fn begin_job(&mut self) {}
    fn stage(&mut self, _: &AppendRequest) -> Result<(), Rejection> {
        Ok(())
    }
    fn abort_job(&mut self) {}
    fn commit_group(&mut self) {}
    fn abort_group(&mut self) {}
}

/// Why a write model refused an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// How to answer it: `Unprocessable` (a rule broken), `Conflict` (against the current
    /// state) or `Forbidden` (outside the principal's scopes).
    pub kind: crate::ErrorKind,
    /// Stable snake_case code, e.g. `invalid_transition`.
    pub code: &'static str,
    /// What is wrong, for a person.
    pub message: String,
    /// Index of the event within its request.
    pub event: usize,
    /// JSON pointer of the offending field inside the event (`/data/agency`), if one.
    pub pointer: Option<String>,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}
