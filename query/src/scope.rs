//! Read scopes: which agencies' rows a caller may read. A scope names root agencies; it reads
//! each and every agency that is or was below one of them in the `parent` hierarchy — an agency
//! merged into one in the scope counts as below it, for its whole history. The set is resolved
//! once per query from the agencies folded so far and handed to the table providers through the
//! query's session ([`ScopeSet`]): each scan of a table whose rows belong to an agency is
//! narrowed by a filter inside the plan, which no SQL above it can get around.

use crate::projections::agencies::Agency;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::Session;
use datafusion::common::{DataFusionError, ScalarValue};
use datafusion::logical_expr::{col, lit, Expr};
use datafusion::physical_expr::expressions::{self, in_list};
use datafusion::physical_plan::filter::FilterExecBuilder;
use datafusion::physical_plan::ExecutionPlan;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

/// What a caller may read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ReadScope {
    /// Everything (`query`, `admin`, chiso itself).
    #[default]
    All,
    /// These agencies and every agency that is or was below one of them (`query:{agency}`).
    Agencies(Vec<String>),
}

/// A query's read scope resolved to agency codes, set on its session; `None`: every agency.
#[derive(Debug, Clone)]
pub(crate) struct ScopeSet(pub Option<Arc<BTreeSet<String>>>);

/// Spans of time as (from, until) in µs, `i64::MIN` / `i64::MAX` for open ends.
type Span = (i64, i64);

/// The agencies `roots` and those that are or were below them: reached through each parent an
/// agency had, over the part of that time its parent was itself reached (a unit that joined a
/// district after the district moved away is not below its former province), and through
/// mergers, for the merged agency's whole history.
pub(crate) fn resolve<'a>(
    agencies: impl IntoIterator<Item = (&'a String, &'a Agency)>,
    roots: &[String],
) -> BTreeSet<String> {
    // Who was below whom, and when.
    let mut below: HashMap<&str, Vec<(&str, Span)>> = HashMap::new();
    for (code, agency) in agencies {
        let mut from = i64::MIN;
        let spans = agency
            .earlier
            .iter()
            .map(|e| (e.parent.as_deref(), e.until));
        let current = (agency.parent.as_deref(), i64::MAX);
        for (parent, until) in spans.chain([current]) {
            if let Some(parent) = parent.filter(|_| from < until) {
                below.entry(parent).or_default().push((code, (from, until)));
            }
            from = until;
        }
        if let Some(successor) = &agency.successor {
            below
                .entry(successor)
                .or_default()
                .push((code, (i64::MIN, i64::MAX)));
        }
    }
    // Each reached agency with the span it was reached over (the hull of its spans).
    let mut reached: HashMap<&str, Span> = HashMap::new();
    let mut queue: Vec<&str> = Vec::new();
    for root in roots {
        reached.insert(root, (i64::MIN, i64::MAX));
        queue.push(root);
    }
    while let Some(code) = queue.pop() {
        let span = reached[code];
        for &(child, (from, until)) in below.get(code).into_iter().flatten() {
            let overlap = (from.max(span.0), until.min(span.1));
            if overlap.0 >= overlap.1 {
                continue;
            }
            let widened = match reached.get(child) {
                Some(&(f, u)) if f <= overlap.0 && overlap.1 <= u => continue,
                Some(&(f, u)) => (f.min(overlap.0), u.max(overlap.1)),
                None => overlap,
            };
            reached.insert(child, widened);
            queue.push(child);
        }
    }
    reached.into_keys().map(str::to_owned).collect()
}

/// The query's scope, as its session carries it: a session without one reads nothing (a path
/// that forgot to resolve the caller's scope fails closed).
pub(crate) fn of(state: &dyn Session) -> datafusion::common::Result<ScopeSet> {
    state
        .config()
        .get_extension::<ScopeSet>()
        .map(|scope| (*scope).clone())
        .ok_or_else(|| DataFusionError::Plan("this query has no read scope".into()))
}

/// Filters on `column` that let a scan skip what is outside `scope` (sealed files and row
/// groups by their statistics): the codes' range, which pruning uses whatever their number,
/// and the codes themselves.
pub(crate) fn pruning_filters(scope: &ScopeSet, column: &str) -> Vec<Expr> {
    let Some(codes) = &scope.0 else {
        return Vec::new();
    };
    let (Some(first), Some(last)) = (codes.first(), codes.last()) else {
        return vec![lit(false)];
    };
    vec![
        col(column).gt_eq(lit(first.as_str())),
        col(column).lt_eq(lit(last.as_str())),
        col(column).in_list(codes.iter().map(|c| lit(c.as_str())).collect(), false),
    ]
}

/// `scan` of a table whose rows belong to the agency in `column` (`schema` its columns, as
/// `projection` indexes them), narrowed to `scope` by a filter on top of it: the column is
/// read even when the query does not select it, and dropped after the filter.
pub(crate) fn narrowed(
    scope: &ScopeSet,
    schema: &SchemaRef,
    column: &str,
    projection: Option<&Vec<usize>>,
    scan: impl FnOnce(Option<&Vec<usize>>) -> datafusion::common::Result<Arc<dyn ExecutionPlan>>,
) -> datafusion::common::Result<Arc<dyn ExecutionPlan>> {
    let Some(codes) = &scope.0 else {
        return scan(projection);
    };
    let index = schema.index_of(column)?;
    let asked: Vec<usize> = match projection {
        Some(projection) => projection.clone(),
        None => (0..schema.fields().len()).collect(),
    };
    let mut read = asked.clone();
    let at = match read.iter().position(|&i| i == index) {
        Some(at) => at,
        None => {
            read.push(index);
            read.len() - 1
        }
    };
    let plan = scan(Some(&read))?;
    let output = plan.schema();
    let data_type = output.field(at).data_type();
    let values = codes
        .iter()
        .map(|code| {
            let value = ScalarValue::try_from_string(code.clone(), data_type)?;
            Ok(expressions::lit(value))
        })
        .collect::<datafusion::common::Result<Vec<_>>>()?;
    let agency = expressions::col(output.field(at).name(), &output)?;
    let predicate = match values.is_empty() {
        true => expressions::lit(false),
        false => in_list(agency, values, &false, &output)?,
    };
    let kept = (read.len() != asked.len()).then(|| (0..asked.len()).collect());
    let filter = FilterExecBuilder::new(predicate, plan)
        .apply_projection(kept)?
        .build()?;
    Ok(Arc::new(filter))
}

/// Which of the log's events a scope reads, stream by stream: the published categories
/// (`agency-`, `ictindex-`, `ranking-`, `calendar-`) whole; a `dossier-` or `service-` stream
/// when its agency — the one its first event names, which never changes — is in the scope;
/// nothing else (chiso's own `token-` records). Keeps what it learnt of each stream.
pub struct LogScope {
    codes: Arc<BTreeSet<String>>,
    owners: HashMap<String, bool>,
}

impl LogScope {
    pub(crate) fn new(codes: Arc<BTreeSet<String>>) -> Self {
        Self {
            codes,
            owners: HashMap::new(),
        }
    }

    /// Whether the scope reads `event`, looking up its stream's first event in `store` when
    /// it is not the first itself.
    pub fn sees(
        &mut self,
        store: &chiso_store::EventStore,
        event: &chiso_store::RecordedEvent,
    ) -> chiso_store::Result<bool> {
        if event.revision == 0 && self.needs_owner(&event.stream).is_none() {
            let seen = self.owned(Some(&event.data));
            self.owners.insert(event.stream.clone(), seen);
            return Ok(seen);
        }
        self.sees_stream(store, &event.stream)
    }

    /// Whether the scope reads the events of `stream` (one that does not exist: `false`).
    pub fn sees_stream(
        &mut self,
        store: &chiso_store::EventStore,
        stream: &str,
    ) -> chiso_store::Result<bool> {
        if let Some(seen) = self.needs_owner(stream) {
            return Ok(seen);
        }
        let name = chiso_store::StreamName::new(stream)?;
        let forwards = chiso_store::ReadDirection::Forwards;
        let first = match store.read_stream(&name, Some(0), forwards, 1) {
            Ok(first) => first,
            Err(error) if error.code() == "stream_not_found" => Vec::new(),
            Err(error) => return Err(error),
        };
        let seen = self.owned(first.first().map(|e| e.data.as_str()));
        self.owners.insert(stream.to_owned(), seen);
        Ok(seen)
    }

    /// The answer for `stream` without its first event, if there is one: by its category, or
    /// as found before.
    fn needs_owner(&self, stream: &str) -> Option<bool> {
        match chiso_store::category_of(stream) {
            "agency" | "ictindex" | "ranking" | "calendar" => Some(true),
            "dossier" | "service" => self.owners.get(stream).copied(),
            _ => Some(false),
        }
    }

    /// Whether the agency a stream's first event names (`data.agency`) is in the scope.
    fn owned(&self, first: Option<&str>) -> bool {
        #[derive(serde::Deserialize)]
        struct Owner {
            agency: String,
        }
        first
            .and_then(|data| serde_json::from_str::<Owner>(data).ok())
            .is_some_and(|owner| self.codes.contains(&owner.agency))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::projections::agencies::Earlier;
    use chiso_ingest::AgencyKind;

    fn agency(code: &str, parent: Option<&str>) -> (String, Agency) {
        let agency = Agency {
            code: code.into(),
            name: code.into(),
            kind: AgencyKind::District,
            parent: parent.map(Into::into),
            province: "26".into(),
            valid_from: None,
            valid_to: None,
            successor: None,
            earlier: Vec::new(),
        };
        (code.to_owned(), agency)
    }

    #[test]
    fn a_scope_reads_what_is_or_was_below_it_and_what_merged_into_it() {
        let mut all: Vec<(String, Agency)> = vec![
            agency("25", None),
            agency("26", None),
            agency("99", None),
            agency("26.A", Some("26")),
            agency("26.A.1", Some("26.A")),
            // A district that moved from 26 to 99 in 2020.
            agency("26.B", Some("99")),
            // A commune under it since before the move, and one that joined after.
            agency("26.B.1", Some("26.B")),
            agency("26.B.2", Some("26.B")),
        ];
        let moved = 2020;
        all[5].1.earlier.push(Earlier {
            until: moved,
            name: "26.B".into(),
            parent: Some("26".into()),
            province: "26".into(),
        });
        all[7].1.valid_from = Some(2021);
        all[7].1.earlier.push(Earlier {
            until: 2021,
            name: "26.B.2".into(),
            parent: None,
            province: "99".into(),
        });
        // 26 merged into 25.
        all[1].1.successor = Some("25".into());
        let scope = |root: &str| {
            let set = resolve(all.iter().map(|(c, a)| (c, a)), &[root.to_owned()]);
            set.into_iter().collect::<Vec<_>>()
        };
        assert_eq!(scope("26"), ["26", "26.A", "26.A.1", "26.B", "26.B.1"]);
        assert_eq!(
            scope("25"),
            ["25", "26", "26.A", "26.A.1", "26.B", "26.B.1"]
        );
        assert_eq!(scope("99"), ["26.B", "26.B.1", "26.B.2", "99"]);
        assert_eq!(scope("26.A.1"), ["26.A.1"]);
        assert_eq!(scope("nowhere"), ["nowhere"]);
    }
}
