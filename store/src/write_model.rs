//! The hook through which domain rules run inside the log's writer: in log order and in the
//! same step as the append, so two clients resolving one dossier at once cannot both succeed.
//! The store stays domain-agnostic: it only knows that a model may refuse an event.

use crate::{AppendRequest, RecordedEvent};
use std::collections::HashMap;
use std::fmt;

/// Domain state that checks appends, kept **per stream**: the state a model needs to check an
/// append to a stream is a value of that stream's (a dossier's status, a service's agency),
/// which the log stores for it in RocksDB. Memory holds only the states changed since the
/// indexer last wrote them, and the model's *resident* categories (small ones it needs across
/// streams, such as agencies), loaded whole at open.
///
/// The writer calls, for every group commit: `begin_job` and `stage` (for each request that
/// is not an idempotent retry) per job, then `abort_job` if the job failed; after the fsync
/// `commit_group`, or `abort_group` if the write failed. `stage` gets the stored states of the
/// group's streams the model [`fetches`](WriteModel::fetches); a model keeps what it staged in
/// an overlay it applies at `commit_group`, and gives back then every stream state it changed.
///
/// At open the log brings the states up to its head by replaying only the events after those
/// it last stored (the stored states carry the position they include), through `replay` and
/// `commit_group`; a state format it does not know ([`WriteModel::state_format`]) makes it
/// rebuild every state from the whole log.
pub trait WriteModel: Send + 'static {
    /// Who asks for an append: what `stage` authorises each request against. Required on
    /// every request, so a model that checks grants cannot be handed a request without one.
    type Principal: Send + 'static;
    /// What the caller decoded of an event's `data`, handed to `stage` with the event.
    type Decoded: Send + 'static;
    /// Whether the model keeps state at all (a model without rules keeps none).
    fn needs_replay(&self) -> bool {
        true
    }
    /// The version of the model's state encoding: stored states of another version are
    /// dropped and rebuilt from the log.
    fn state_format(&self) -> u32;
    /// The categories whose streams' states the model keeps in memory, every one of them:
    /// given to [`WriteModel::load`] at open, and never fetched.
    fn resident_categories(&self) -> &'static [&'static str] {
        &[]
    }
    /// Whether `stage` and `replay` need the stored state of `stream`.
    fn fetches(&self, stream: &str) -> bool;
    /// Loads the stored state of a stream of a resident category, at open.
    fn load(&mut self, stream: &str, state: &[u8]) -> Result<(), String>;
    /// Applies one stored event (which the rules accepted when it was appended), at open, in
    /// position order; its effect is committed with the next `commit_group`.
    fn replay(&mut self, event: &RecordedEvent, stored: &StoredStates) -> Result<(), String>;
    /// A new all-or-nothing job begins.
    fn begin_job(&mut self);
    /// Checks a request against the state and what this group staged; stages it if valid.
    fn stage(&mut self, request: &RequestOf<Self>, stored: &StoredStates) -> Result<(), Rejection>;
    /// The current job failed: forget what it staged.
    fn abort_job(&mut self);
    /// The group is durable: staged effects are now state. Pushes `(stream, state)` for every
    /// stream whose state the group changed, for the log to store.
    fn commit_group(&mut self, changed: &mut Vec<(Box<str>, Vec<u8>)>);
    /// The group's write failed: forget everything it staged.
    fn abort_group(&mut self);
}

/// An append request to a log whose rules are `M`.
pub type RequestOf<M> = AppendRequest<<M as WriteModel>::Principal, <M as WriteModel>::Decoded>;

/// The stored states of the streams of one group, as the log read them before the group
/// (a stream without one has none yet).
#[derive(Debug, Default)]
pub struct StoredStates {
    /// Stream → `position (u64 BE) · state`, as stored (at least 8 bytes: checked on read).
    states: HashMap<Box<str>, Vec<u8>, foldhash::fast::RandomState>,
}

impl StoredStates {
    /// The state of `stream`, if it has one.
    pub fn get(&self, stream: &str) -> Option<&[u8]> {
        self.states.get(stream).map(|value| &value[8..])
    }

    /// The position the stored state of `stream` includes every event up to.
    pub(crate) fn stamp(&self, stream: &str) -> Option<u64> {
        let value = self.states.get(stream)?;
        Some(u64::from_be_bytes(value[..8].try_into().expect("8 bytes")))
    }

    /// Adds a stored value (`position · state`, at least 8 bytes).
    pub(crate) fn insert(&mut self, stream: Box<str>, value: Vec<u8>) {
        debug_assert!(value.len() >= 8);
        self.states.insert(stream, value);
    }

    pub(crate) fn contains(&self, stream: &str) -> bool {
        self.states.contains_key(stream)
    }
}

/// A model with no rules: every event is accepted. It takes no principal (`()`): it has no
/// rules to check a grant against, so none can be handed to it.
#[derive(Debug, Default)]
pub struct NoRules;

impl WriteModel for NoRules {
    type Principal = ();
    type Decoded = ();
    fn needs_replay(&self) -> bool {
        false
    }
    fn state_format(&self) -> u32 {
        0
    }
    fn fetches(&self, _: &str) -> bool {
        false
    }
    fn load(&mut self, _: &str, _: &[u8]) -> Result<(), String> {
        Ok(())
    }
    fn replay(&mut self, _: &RecordedEvent, _: &StoredStates) -> Result<(), String> {
        Ok(())
    }
    fn begin_job(&mut self) {}
    fn stage(&mut self, _: &RequestOf<Self>, _: &StoredStates) -> Result<(), Rejection> {
        Ok(())
    }
    fn abort_job(&mut self) {}
    fn commit_group(&mut self, _: &mut Vec<(Box<str>, Vec<u8>)>) {}
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
