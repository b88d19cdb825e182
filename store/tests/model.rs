//! Model test: random sequences of appends (random expected revisions, retries with the same
//! ids, reused ids with other content, multi-stream batches) and reopenings, every answer and
//! every read checked against a plain in-memory model of the log. A write model that counts
//! each stream's events checks the stream states the log keeps for it: read back for every
//! group (memory, then disk), replayed at open, rebuilt when their format changes.

use chiso_store::{
    AppendRequest, AppendResult, Appender, Error, EventStore, ExpectedRevision, LogOptions,
    ProposedEvent, ReadDirection, RecordedEvent, Rejection, StoreMetrics, StoredStates, StreamName,
    WriteModel,
};
use proptest::prelude::*;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use uuid::Uuid;

/// How many events each stream has, as the write model last committed it.
type Counts = Arc<Mutex<HashMap<String, u64>>>;

/// A write model whose state of a stream is its number of events: `t-` streams' states are
/// fetched for each group, `s-` streams' are resident (loaded at open). It refuses nothing;
/// what it counts is compared with the log.
struct Tally {
    format: u32,
    resident: HashMap<String, u64>,
    staged: HashMap<String, u64>,
    undo: Vec<(String, Option<u64>)>,
    job_start: usize,
    committed: Counts,
}

impl Tally {
    fn new(format: u32, committed: Counts) -> Self {
        Self {
            format,
            resident: HashMap::new(),
            staged: HashMap::new(),
            undo: Vec::new(),
            job_start: 0,
            committed,
        }
    }

    fn count(&self, stream: &str, stored: &StoredStates) -> u64 {
        if let Some(&staged) = self.staged.get(stream) {
            return staged;
        }
        match self.fetches(stream) {
            true => stored
                .get(stream)
                .map_or(0, |bytes| u64::from_le_bytes(bytes.try_into().unwrap())),
            false => self.resident.get(stream).copied().unwrap_or(0),
        }
    }

    fn add(&mut self, stream: &str, events: u64, stored: &StoredStates) {
        let count = self.count(stream, stored) + events;
        let previous = self.staged.insert(stream.to_owned(), count);
        self.undo.push((stream.to_owned(), previous));
    }

    fn undo_to(&mut self, mark: usize) {
        while self.undo.len() > mark {
            let (stream, previous) = self.undo.pop().unwrap();
            match previous {
                Some(count) => self.staged.insert(stream, count),
                None => self.staged.remove(&stream),
            };
        }
    }
}

impl WriteModel for Tally {
    type Principal = ();
    type Decoded = ();

    fn state_format(&self) -> u32 {
        self.format
    }
    fn resident_categories(&self) -> &'static [&'static str] {
        &["s"]
    }
    fn fetches(&self, stream: &str) -> bool {
        stream.starts_with("t-")
    }
    fn load(&mut self, stream: &str, state: &[u8]) -> Result<(), String> {
        let count = u64::from_le_bytes(state.try_into().map_err(|_| "not a count")?);
        self.resident.insert(stream.to_owned(), count);
        Ok(())
    }
    fn replay(&mut self, event: &RecordedEvent, stored: &StoredStates) -> Result<(), String> {
        self.add(&event.stream, 1, stored);
        Ok(())
    }
    fn begin_job(&mut self) {
        self.job_start = self.undo.len();
    }
    fn stage(&mut self, request: &AppendRequest, stored: &StoredStates) -> Result<(), Rejection> {
        self.add(request.stream.as_str(), request.events.len() as u64, stored);
        Ok(())
    }
    fn abort_job(&mut self) {
        self.undo_to(self.job_start);
    }
    fn commit_group(&mut self, changed: &mut Vec<(Box<str>, Vec<u8>)>) {
        let mut committed = self.committed.lock().unwrap();
        for (stream, count) in self.staged.drain() {
            changed.push((stream.as_str().into(), count.to_le_bytes().to_vec()));
            committed.insert(stream.clone(), count);
            if !stream.starts_with("t-") {
                self.resident.insert(stream, count);
            }
        }
        self.undo.clear();
    }
    fn abort_group(&mut self) {
        self.undo.clear();
        self.staged.clear();
    }
}

#[derive(Debug, Clone)]
enum Expect {
    Any,
    NoStream,
    StreamExists,
    Exact(u64),
}

#[derive(Debug, Clone)]
struct Req {
    stream: u8,
    expect: Expect,
    events: usize,
}

#[derive(Debug, Clone)]
enum Op {
    Append(Vec<Req>),
    Retry(usize),
    ReuseIdWithOtherData(usize),
    RetryReordered(usize),
    RetryInOtherStream(usize),
    RetryWithNewFirst(usize),
    RepeatIdInUnit,
    Reopen,
    /// Reopens with a write model whose state format is another: every state is rebuilt.
    ReopenInNewFormat,
}

fn req() -> impl Strategy<Value = Req> {
    let expect = prop_oneof![
        Just(Expect::Any),
        Just(Expect::NoStream),
        Just(Expect::StreamExists),
        (0u64..4).prop_map(Expect::Exact),
    ];
    (0u8..4, expect, 1usize..4).prop_map(|(stream, expect, events)| Req {
        stream,
        expect,
        events,
    })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => prop::collection::vec(req(), 1..4).prop_map(Op::Append),
        2 => any::<usize>().prop_map(Op::Retry),
        1 => any::<usize>().prop_map(Op::ReuseIdWithOtherData),
        1 => any::<usize>().prop_map(Op::RetryReordered),
        1 => any::<usize>().prop_map(Op::RetryInOtherStream),
        1 => any::<usize>().prop_map(Op::RetryWithNewFirst),
        1 => Just(Op::RepeatIdInUnit),
        2 => Just(Op::Reopen),
        1 => Just(Op::ReopenInNewFormat),
    ]
}

/// What the model expects an append unit to answer.
#[derive(Debug, PartialEq)]
enum Outcome {
    Ok(Vec<AppendResult>),
    WrongRevision { index: usize, actual: Option<u64> },
    DuplicateId { index: usize },
    RepeatedInUnit { index: usize },
}

#[derive(Clone, Default)]
struct Model {
    /// Every event in position order: (stream, revision, event).
    all: Vec<(String, u64, ProposedEvent)>,
    streams: BTreeMap<String, Vec<u64>>,
}

impl Model {
    fn find(&self, id: Uuid) -> Option<(u64, &(String, u64, ProposedEvent))> {
        (0..).zip(&self.all).find(|(_, (_, _, e))| e.id == id)
    }

    fn apply(&mut self, unit: &[AppendRequest]) -> Outcome {
        let mut seen = std::collections::HashSet::new();
        for (index, request) in unit.iter().enumerate() {
            if request.events.iter().any(|e| !seen.insert(e.id)) {
                return Outcome::RepeatedInUnit { index };
            }
        }
        let mut next = self.clone();
        let mut results = Vec::new();
        for (index, request) in unit.iter().enumerate() {
            match next.apply_one(request) {
                Ok(result) => results.push(result),
                Err(outcome) => return outcome(index),
            }
        }
        *self = next;
        Outcome::Ok(results)
    }

    #[allow(clippy::type_complexity)]
    fn apply_one(
        &mut self,
        request: &AppendRequest,
    ) -> Result<AppendResult, Box<dyn Fn(usize) -> Outcome>> {
        let stream = request.stream.as_str().to_owned();
        let found: Vec<_> = request.events.iter().map(|e| self.find(e.id)).collect();
        if found.iter().any(Option::is_some) {
            let first = found[0];
            let all_match = (0..)
                .zip(request.events.iter().zip(&found))
                .all(|(k, (e, f))| {
                    matches!((f, first), (Some((p, (s, r, stored))), Some((p0, (_, r0, _))))
                    if *s == stream && *r == r0 + k && *p == p0 + k && stored == e)
                });
            if !all_match {
                return Err(Box::new(|index| Outcome::DuplicateId { index }));
            }
            let (p0, (_, r0, _)) = first.unwrap();
            let (p1, (_, r1, _)) = found.last().unwrap().unwrap();
            return Ok(AppendResult {
                first_revision: *r0,
                last_revision: *r1,
                first_position: p0,
                last_position: p1,
            });
        }
        let positions = self.streams.entry(stream.clone()).or_default();
        let actual = (positions.len() as u64).checked_sub(1);
        if !request.expected.accepts(actual) {
            if positions.is_empty() {
                self.streams.remove(&stream);
            }
            return Err(Box::new(move |index| Outcome::WrongRevision {
                index,
                actual,
            }));
        }
        let first_revision = positions.len() as u64;
        let first_position = self.all.len() as u64;
        for event in &request.events {
            let revision = positions.len() as u64;
            positions.push(self.all.len() as u64);
            self.all.push((stream.clone(), revision, event.clone()));
        }
        Ok(AppendResult {
            first_revision,
            last_revision: first_revision + request.events.len() as u64 - 1,
            first_position,
            last_position: self.all.len() as u64 - 1,
        })
    }
}

fn outcome_of(result: Result<Vec<AppendResult>, Error>) -> Outcome {
    match result {
        Ok(results) => Outcome::Ok(results),
        Err(Error::WrongExpectedRevision { index, actual, .. }) => {
            Outcome::WrongRevision { index, actual }
        }
        Err(Error::DuplicateEventId { index, .. }) => Outcome::DuplicateId { index },
        Err(Error::DuplicateIdInRequest { index, .. }) => Outcome::RepeatedInUnit { index },
        Err(other) => panic!("unexpected error {other}"),
    }
}

struct Harness {
    dir: tempfile::TempDir,
    store: Option<Appender<Tally>>,
    runtime: tokio::runtime::Runtime,
    model: Model,
    applied: Vec<Vec<AppendRequest>>,
    counter: u128,
    /// How many times the log was reopened.
    opened: usize,
    /// The write model's state format.
    format: u32,
    /// Each stream's event count as the write model last committed it.
    counts: Counts,
}

/// Opens the log with a tiny index batch, so the indexer writes runs, ids and states while the
/// test reads; two openings in three leave them unwritten at shutdown, as a crash would, so the
/// next one rebuilds them from the chunks and replays the tail (also after a rebuild of every
/// state, whose states are then ahead of the indexed position).
fn open(path: &std::path::Path, opened: usize, format: u32, counts: &Counts) -> Appender<Tally> {
    let options = LogOptions {
        index_batch_runs: 3,
        index_at_shutdown: opened % 3 == 0,
        ..LogOptions::default()
    };
    let model = Tally::new(format, counts.clone());
    EventStore::open_with_options(path, StoreMetrics::default(), model, options).unwrap()
}

impl Harness {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let counts = Counts::default();
        let store = Some(open(dir.path(), 0, 1, &counts));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        Self {
            dir,
            store,
            runtime,
            model: Model::default(),
            applied: Vec::new(),
            counter: 0,
            opened: 0,
            format: 1,
            counts,
        }
    }

    fn store(&self) -> &Appender<Tally> {
        self.store.as_ref().unwrap()
    }

    fn event(&mut self) -> ProposedEvent {
        self.counter += 1;
        ProposedEvent {
            id: Uuid::from_u128(self.counter),
            event_type: format!("Type{}", self.counter % 3),
            data: format!(r#"{{"n":{}}}"#, self.counter),
            metadata: "{}".into(),
            decoded: (),
        }
    }

    fn unit(&mut self, reqs: &[Req]) -> Vec<AppendRequest> {
        reqs.iter()
            .map(|r| AppendRequest {
                // Two categories, so category reads skip some of the log.
                stream: StreamName::new(format!(
                    "{}-{}",
                    ["s", "t"][r.stream as usize % 2],
                    r.stream
                ))
                .unwrap(),
                expected: match r.expect {
                    Expect::Any => ExpectedRevision::Any,
                    Expect::NoStream => ExpectedRevision::NoStream,
                    Expect::StreamExists => ExpectedRevision::StreamExists,
                    Expect::Exact(n) => ExpectedRevision::Exact(n),
                },
                events: (0..r.events).map(|_| self.event()).collect(),
                principal: (),
            })
            .collect()
    }

    fn run(&mut self, op: Op) {
        let unit = match op {
            Op::Append(reqs) => self.unit(&reqs),
            Op::Retry(i) if !self.applied.is_empty() => {
                self.applied[i % self.applied.len()].clone()
            }
            Op::ReuseIdWithOtherData(i) if !self.applied.is_empty() => {
                let mut unit = self.applied[i % self.applied.len()].clone();
                unit[0].events[0].data = r#"{"other":true}"#.into();
                unit
            }
            Op::RetryReordered(i) if !self.applied.is_empty() => {
                let mut unit = self.applied[i % self.applied.len()].clone();
                unit[0].events.reverse();
                unit
            }
            Op::RetryInOtherStream(i) if !self.applied.is_empty() => {
                let mut unit = self.applied[i % self.applied.len()].clone();
                unit[0].stream = StreamName::new("s-other").unwrap();
                unit
            }
            Op::RetryWithNewFirst(i) if !self.applied.is_empty() => {
                let mut unit = self.applied[i % self.applied.len()].clone();
                let fresh = self.event();
                unit[0].events.insert(0, fresh);
                unit
            }
            Op::RepeatIdInUnit => {
                let mut unit = self.unit(&[Req {
                    stream: 0,
                    expect: Expect::Any,
                    events: 2,
                }]);
                unit[0].events[1].id = unit[0].events[0].id;
                unit
            }
            Op::Reopen | Op::ReopenInNewFormat => {
                let store = self.store.take().unwrap();
                let indexed_at_shutdown = self.opened % 3 == 0;
                self.runtime.block_on(store.shutdown());
                drop(store);
                let rebuilt = matches!(op, Op::ReopenInNewFormat);
                self.format += u32::from(rebuilt);
                self.opened += 1;
                let store = open(self.dir.path(), self.opened, self.format, &self.counts);
                let replayed = store.replayed_at_open();
                let head = self.model.all.len() as u64;
                match (rebuilt, indexed_at_shutdown) {
                    (true, _) => assert_eq!(replayed, head, "a rebuild replays every event"),
                    (false, true) => assert_eq!(replayed, 0, "every state was stored"),
                    (false, false) => assert!(replayed <= head),
                }
                self.store = Some(store);
                return self.check_reads();
            }
            _ => return,
        };
        let expected = self.model.apply(&unit);
        let actual = outcome_of(
            self.runtime
                .block_on(self.store().append_all("model", unit.clone())),
        );
        assert_eq!(actual, expected);
        if matches!(expected, Outcome::Ok(_)) {
            self.applied.push(unit);
        }
        self.check_reads();
    }

    fn check_reads(&self) {
        self.check_counts();
        let store = self.store();
        assert_eq!(store.head(), self.model.all.len() as u64);
        let all = store.read_all(0, usize::MAX).unwrap();
        assert_eq!(all.len(), self.model.all.len());
        for (position, (event, (stream, revision, proposed))) in
            (0..).zip(all.iter().zip(&self.model.all))
        {
            assert_eq!(event.position, position);
            assert_eq!(&event.stream, stream);
            assert_eq!(event.revision, *revision);
            assert_eq!(event.id, proposed.id);
            assert_eq!(event.data, proposed.data);
        }
        // In-place scans agree with the copies, from anywhere and across chunk boundaries.
        let len = all.len();
        for from in (0..=len)
            .step_by(len.div_ceil(16).max(1))
            .chain([len.saturating_sub(1)])
        {
            for limit in [1, 3, 65, usize::MAX] {
                let mut scanned = Vec::new();
                let read = store
                    .scan(from as u64, limit, |event| {
                        scanned.push(event.to_recorded())
                    })
                    .unwrap();
                let expected: Vec<_> = all.iter().skip(from).take(limit).cloned().collect();
                assert_eq!(read, expected.len() as u64);
                assert_eq!(scanned, expected);
            }
        }
        for (stream, positions) in &self.model.streams {
            let name = StreamName::new(stream.clone()).unwrap();
            let forwards = store
                .read_stream(&name, None, ReadDirection::Forwards, usize::MAX)
                .unwrap();
            let got: Vec<u64> = forwards.iter().map(|e| e.position).collect();
            assert_eq!(&got, positions);
            let backwards = store
                .read_stream(&name, None, ReadDirection::Backwards, 2)
                .unwrap();
            let expected: Vec<u64> = positions.iter().rev().take(2).copied().collect();
            let got: Vec<u64> = backwards.iter().map(|e| e.position).collect();
            assert_eq!(got, expected);
            // From every revision, both ways, two at a time: the boundaries between stored
            // and recent runs.
            for from in 0..=positions.len() as u64 {
                let read = |direction| {
                    let events = store.read_stream(&name, Some(from), direction, 2).unwrap();
                    events.iter().map(|e| e.position).collect::<Vec<u64>>()
                };
                let at = from as usize;
                let expected: Vec<u64> = positions.iter().skip(at).take(2).copied().collect();
                assert_eq!(
                    read(ReadDirection::Forwards),
                    expected,
                    "{stream} from {from}"
                );
                let upto = at.min(positions.len() - 1);
                let expected: Vec<u64> = positions[..=upto].iter().rev().take(2).copied().collect();
                assert_eq!(
                    read(ReadDirection::Backwards),
                    expected,
                    "{stream} back from {from}"
                );
            }
            let revision = store.stream_revision(&name).unwrap();
            assert_eq!(revision, Some(positions.len() as u64 - 1));
        }
        self.check_category_reads(&all);
        let absent = StreamName::new("s-absent").unwrap();
        assert!(matches!(
            store.read_stream(&absent, None, ReadDirection::Forwards, 10),
            Err(Error::StreamNotFound(_))
        ));
    }
}

impl Harness {
    /// Category reads from every position, a few events at a time, give the model's events
    /// of those categories; following them to the head gives all of them once.
    fn check_category_reads(&self, all: &[chiso_store::RecordedEvent]) {
        let store = self.store();
        let head = store.head();
        for categories in [&["s"][..], &["t"], &["s", "t"], &["t", "s", "t"], &["none"]] {
            let categories: Vec<String> = categories.iter().map(|c| c.to_string()).collect();
            let of = |from: u64| -> Vec<u64> {
                let wanted = |e: &&chiso_store::RecordedEvent| {
                    e.position >= from
                        && categories
                            .iter()
                            .any(|c| *c == chiso_store::category_of(&e.stream))
                };
                all.iter().filter(wanted).map(|e| e.position).collect()
            };
            let step = (head as usize).div_ceil(24).max(1);
            for from in (0..=head).step_by(step).chain([head.saturating_sub(1)]) {
                for limit in [1, 2, 5] {
                    let (events, next) = store.read_categories(from, &categories, limit).unwrap();
                    let expected: Vec<u64> = of(from).into_iter().take(limit).collect();
                    let got: Vec<u64> = events.iter().map(|e| e.position).collect();
                    assert_eq!(got, expected, "{categories:?} from {from}, {limit}");
                    let expected_next = match expected.len() == limit {
                        true => expected[limit - 1] + 1,
                        false => head,
                    };
                    assert_eq!(next, expected_next, "{categories:?} from {from}, {limit}");
                    for event in &events {
                        assert_eq!(event, &all[event.position as usize]);
                    }
                }
            }
            let (mut followed, mut next) = (Vec::new(), 0);
            while next < head {
                let (events, after) = store.read_categories(next, &categories, 3).unwrap();
                assert!(after > next);
                followed.extend(events.iter().map(|e| e.position));
                next = after;
            }
            assert_eq!(followed, of(0));
        }
    }
}

impl Harness {
    /// The write model counted every stream's events as the log holds them.
    fn check_counts(&self) {
        let counts = self.counts.lock().unwrap();
        for (stream, positions) in &self.model.streams {
            let counted = counts.get(stream).copied();
            assert_eq!(counted, Some(positions.len() as u64), "events of {stream}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn the_log_behaves_like_the_model(ops in prop::collection::vec(op(), 1..40)) {
        let mut harness = Harness::new();
        for op in ops {
            harness.run(op);
        }
    }
}

fn one_worker_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

/// States on disk ahead of the indexed position (a rebuild of every state, or a crash between
/// the indexer's writes of states and of its position) are not replayed into again: each
/// stored state's stamp says which events it includes.
#[test]
fn states_ahead_of_the_indexed_position_are_not_replayed_twice() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = one_worker_runtime();
    let counts = Counts::default();
    let open = |format| {
        let options = LogOptions {
            index_batch_runs: 1_000_000,
            index_at_shutdown: false,
            ..LogOptions::default()
        };
        let model = Tally::new(format, counts.clone());
        EventStore::open_with_options(dir.path(), StoreMetrics::default(), model, options).unwrap()
    };
    let noted = |stream: &str| AppendRequest {
        stream: StreamName::new(stream).unwrap(),
        expected: ExpectedRevision::Any,
        events: vec![ProposedEvent {
            id: Uuid::new_v4(),
            event_type: "Noted".into(),
            data: "{}".into(),
            metadata: "{}".into(),
            decoded: (),
        }],
        principal: (),
    };
    let store = open(1);
    for stream in ["t-1", "s-1", "t-1", "t-2"] {
        runtime
            .block_on(store.append("model", noted(stream)))
            .unwrap();
    }
    runtime.block_on(store.shutdown());
    drop(store);
    let expected = HashMap::from([("t-1".into(), 2), ("s-1".into(), 1), ("t-2".into(), 1)]);
    // Nothing was indexed: the next open replays all 4 events, in a new format rebuilding
    // every state up to the head, while the indexed position stays at 0.
    let store = open(2);
    assert_eq!(store.replayed_at_open(), 4);
    assert_eq!(*counts.lock().unwrap(), expected);
    runtime.block_on(store.shutdown());
    drop(store);
    counts.lock().unwrap().clear();
    let store = open(2);
    assert_eq!(
        store.replayed_at_open(),
        0,
        "every state includes every event"
    );
    runtime.block_on(store.shutdown());
    drop(store);
    // One more event per stream is counted on top of the stored states, not twice.
    for stream in ["t-1", "s-1", "t-2"] {
        let store = open(2);
        runtime
            .block_on(store.append("model", noted(stream)))
            .unwrap();
        runtime.block_on(store.shutdown());
    }
    let expected = HashMap::from([("t-1".into(), 3), ("s-1".into(), 2), ("t-2".into(), 2)]);
    assert_eq!(*counts.lock().unwrap(), expected);
}

/// A log opened with its compactions deferred owes them until it resumes them: the files its
/// reopenings flushed wait (a server puts its tables back first), then are compacted.
#[test]
fn deferred_compactions_run_once_resumed() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = one_worker_runtime();
    let counts = Counts::default();
    let open = || {
        let options = LogOptions {
            defer_compactions: true,
            ..LogOptions::default()
        };
        let model = Tally::new(1, counts.clone());
        EventStore::open_with_options(dir.path(), StoreMetrics::default(), model, options).unwrap()
    };
    // Each opening flushes the writes the one before left in its write-ahead log: a file of
    // the first level each, past the 4 that call for a compaction.
    for round in 0..6 {
        let store = open();
        let events = (0..200)
            .map(|n| ProposedEvent {
                id: Uuid::new_v4(),
                event_type: "Noted".into(),
                data: format!("{{\"round\":{round},\"n\":{n}}}"),
                metadata: "{}".into(),
                decoded: (),
            })
            .collect();
        let request = AppendRequest {
            stream: StreamName::new(format!("t-{round}")).unwrap(),
            expected: ExpectedRevision::Any,
            events,
            principal: (),
        };
        runtime.block_on(store.append("model", request)).unwrap();
        runtime.block_on(store.shutdown());
    }
    let store = open();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let owed = store.background().pending_compaction_bytes;
    assert!(owed > 0, "six flushed files owe a compaction");
    assert_eq!(store.background().running_compactions, 0);
    assert_eq!(
        store.background().pending_compaction_bytes,
        owed,
        "nothing compacted while deferred"
    );
    store.resume_compactions().unwrap();
    let started = std::time::Instant::now();
    while store.background().pending_compaction_bytes > 0 {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "the owed compaction ran"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(store.head(), 1_200);
    runtime.block_on(store.shutdown());
}
