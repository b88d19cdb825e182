//! Monthly rankings (ARCHITECTURE.md §5): `on_time_rate`, `online_share` and `scorecard` for
//! each agency, ranked among the agencies of one kind in each province, and among the
//! provinces of the country.
//!
//! Values are percentages (0–100, two decimals). Rank = 1 + the number of agencies in the scope
//! with a strictly greater value, so ties share a rank; an agency with nothing to measure for a
//! metric is left out. The scorecard scales the Decision 766 components the events measure —
//! progress 20 (on-time rate), online services 12 (online share of receipts), online payment 10
//! (online share of payments), satisfaction 18 (mean rating / 5) — to 100 over the components
//! measurable for that agency that month.

use crate::error::{Error, Result};
use crate::local_time::{
    day_start, local_day, local_month, month_first_day, month_of_day, MonthKey,
};
use crate::projections::{sealed, Projections, Tables};
use chiso_ingest::{AgencyKind, Metric, RankingEntry, RankingPublished};
use datafusion::arrow::array::{
    Array, BooleanArray, Int32Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// One month's counts for one agency (or one province).
#[derive(Debug, Default, Clone, Copy)]
struct Figures {
    received: i64,
    received_online: i64,
    resolved: i64,
    in_time: i64,
    paid: i64,
    paid_online: i64,
    ratings: i64,
    rating_sum: i64,
}

impl Figures {
    fn add(&mut self, other: &Figures) {
        self.received += other.received;
        self.received_online += other.received_online;
        self.resolved += other.resolved;
        self.in_time += other.in_time;
        self.paid += other.paid;
        self.paid_online += other.paid_online;
        self.ratings += other.ratings;
        self.rating_sum += other.rating_sum;
    }

    fn ratio(part: i64, whole: i64) -> Option<f64> {
        (whole > 0).then(|| part as f64 / whole as f64)
    }

    fn value(&self, metric: Metric) -> Option<f64> {
        let value = match metric {
            Metric::OnTimeRate => Self::ratio(self.in_time, self.resolved)? * 100.0,
            Metric::OnlineShare => Self::ratio(self.received_online, self.received)? * 100.0,
            Metric::Scorecard => self.scorecard()?,
        };
        Some((value * 100.0).round() / 100.0)
    }

    /// The measurable components (score, max), scaled to 100.
    fn scorecard(&self) -> Option<f64> {
        let components = [
            (Self::ratio(self.in_time, self.resolved), 20.0),
            (Self::ratio(self.received_online, self.received), 12.0),
            (Self::ratio(self.paid_online, self.paid), 10.0),
            (Self::ratio(self.rating_sum, self.ratings * 5), 18.0),
        ];
        let (score, max) = components
            .iter()
            .filter_map(|(share, max)| share.map(|s| (s * max, *max)))
            .fold((0.0, 0.0), |(score, total), (s, m)| (score + s, total + m));
        (max > 0.0).then(|| score / max * 100.0)
    }
}

/// The band of a scorecard (the provinces' monthly scorecard: ≥ 90 excellent … < 50 weak).
pub fn band(score: f64) -> &'static str {
    match score {
        s if s >= 90.0 => "excellent",
        s if s >= 80.0 => "good",
        s if s >= 70.0 => "fair",
        s if s >= 50.0 => "average",
        _ => "weak",
    }
}

/// A published ranking: its position and `(agency, value, rank)` entries.
type Published = (u64, Vec<(String, f64, u32)>);

/// What ranking a month needs: every agency's figures, the agencies, and what is published.
struct Inputs {
    figures: BTreeMap<String, Figures>,
    agencies: HashMap<String, (Arc<str>, AgencyKind)>,
    /// `(scope, metric)` → the position and entries of the latest publication of the month.
    published: BTreeMap<(String, String), Published>,
}

/// The columns of a sealed file the figures read.
const SEALED_COLUMNS: [&str; 4] = ["agency", "resolved_at", "paid_online", "rating"];

/// Every agency's figures for `month`: receipts and resolutions from the daily counts,
/// payments and ratings of the dossiers resolved in the month (in memory and sealed).
fn inputs(projections: &Projections, month: MonthKey) -> Result<Inputs> {
    // A month's resolutions are in months not settled before it began (as in the report).
    let month_start = day_start(month_first_day(month));
    let name = crate::local_time::month_name(month);
    let (mut inputs, files) = projections.read_with_sealed(
        month,
        |m| m.settled_at() >= month_start,
        |tables| {
            let mut figures: BTreeMap<String, Figures> = BTreeMap::new();
            for (agency, counts) in tables.monthly.get(&month).into_iter().flatten() {
                let f = figures.entry(agency.to_string()).or_default();
                f.received += counts.received;
                f.received_online += counts.received_online;
                f.resolved += counts.resolved;
                f.in_time += counts.resolved_early + counts.resolved_on_time;
            }
            let months = tables.dossiers.months.range(..=month).map(|(_, m)| m);
            for partition in months.filter(|m| m.settled_at() >= month_start) {
                for d in partition.rows() {
                    if d.resolved_at.is_some_and(|at| local_month(at) == month) {
                        add_payment_and_rating(&mut figures, &d.agency, d.paid_online, d.rating);
                    }
                }
            }
            // The units that exist as the month ends, in their provinces then: a month
            // before a reorganisation ranks the old units, one after it the new.
            let end = day_start(month_first_day(month + 1)) - 1;
            let agencies = tables
                .agencies
                .iter()
                .filter(|(_, a)| a.exists_at(end))
                .map(|(code, a)| (code.clone(), (a.at(end).2.clone(), a.kind)))
                .collect();
            let published = tables
                .rankings
                .range((name.clone(), String::new(), String::new())..)
                .take_while(|((m, _, _), _)| *m == name)
                .map(|((_, scope, metric), r)| {
                    (
                        (scope.clone(), metric.clone()),
                        (r.position, r.entries.clone()),
                    )
                })
                .collect();
            Inputs {
                figures,
                agencies,
                published,
            }
        },
    );
    for file in files {
        for batch in sealed::read_base(&file.path, &file.base, Some(&SEALED_COLUMNS))? {
            add_sealed(&mut inputs.figures, &batch, month)?;
        }
    }
    Ok(inputs)
}

fn add_payment_and_rating(
    figures: &mut BTreeMap<String, Figures>,
    agency: &str,
    paid_online: Option<bool>,
    rating: Option<u8>,
) {
    if paid_online.is_none() && rating.is_none() {
        return;
    }
    if !figures.contains_key(agency) {
        figures.insert(agency.to_owned(), Figures::default());
    }
    let f = figures.get_mut(agency).expect("just inserted");
    if let Some(online) = paid_online {
        f.paid += 1;
        f.paid_online += i64::from(online);
    }
    if let Some(score) = rating {
        f.ratings += 1;
        f.rating_sum += i64::from(score);
    }
}

fn add_sealed(
    figures: &mut BTreeMap<String, Figures>,
    batch: &RecordBatch,
    month: MonthKey,
) -> Result<()> {
    let unreadable = |name: &str| Error::Segment {
        file: "sealed dossiers".into(),
        reason: format!("column {name} is unreadable"),
    };
    let column = |i: usize| batch.column(i).as_any();
    let agency = column(0)
        .downcast_ref::<StringArray>()
        .ok_or_else(|| unreadable("agency"))?;
    let resolved = column(1)
        .downcast_ref::<TimestampMicrosecondArray>()
        .ok_or_else(|| unreadable("resolved_at"))?;
    let paid = column(2)
        .downcast_ref::<BooleanArray>()
        .ok_or_else(|| unreadable("paid_online"))?;
    let rating = column(3)
        .downcast_ref::<Int32Array>()
        .ok_or_else(|| unreadable("rating"))?;
    for i in 0..batch.num_rows() {
        if resolved.is_null(i) || local_month(resolved.value(i)) != month {
            continue;
        }
        let paid_online = paid.is_valid(i).then(|| paid.value(i));
        let score = rating.is_valid(i).then(|| rating.value(i) as u8);
        add_payment_and_rating(figures, agency.value(i), paid_online, score);
    }
    Ok(())
}

/// The rankings of `month`, one publication per scope and metric, in a stable order.
fn compute(inputs: &Inputs, month: MonthKey) -> Vec<RankingPublished> {
    let mut scopes: BTreeMap<String, Vec<(&str, Figures)>> = BTreeMap::new();
    let mut provinces: BTreeMap<&str, Figures> = BTreeMap::new();
    for (agency, f) in &inputs.figures {
        let Some((province, kind)) = inputs.agencies.get(agency) else {
            continue;
        };
        let scope = format!("province:{province}:{}", kind.as_str());
        scopes.entry(scope).or_default().push((agency, *f));
        provinces.entry(province).or_default().add(f);
    }
    // A province is ranked as its province-level agency (code = province code).
    let national: Vec<(&str, Figures)> = provinces
        .into_iter()
        .filter(|(code, _)| {
            inputs
                .agencies
                .get(*code)
                .is_some_and(|(_, kind)| *kind == AgencyKind::Province)
        })
        .collect();
    scopes.insert("national:province".into(), national);
    let name = crate::local_time::month_name(month);
    let mut published = Vec::new();
    for (scope, members) in scopes {
        for metric in [Metric::OnTimeRate, Metric::OnlineShare, Metric::Scorecard] {
            let entries = rank(&members, metric);
            if !entries.is_empty() {
                published.push(RankingPublished {
                    month: name.clone(),
                    scope: scope.clone(),
                    metric,
                    entries,
                    // The publisher anchors it, after its id is derived.
                    chain: None,
                });
            }
        }
    }
    published
}

/// Ranks the members that have a value: ties share a rank.
fn rank(members: &[(&str, Figures)], metric: Metric) -> Vec<RankingEntry> {
    let mut valued: Vec<(&str, f64)> = members
        .iter()
        .filter_map(|(agency, f)| f.value(metric).map(|v| (*agency, v)))
        .collect();
    valued.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
    valued
        .iter()
        .map(|(agency, value)| RankingEntry {
            agency: (*agency).to_owned(),
            value: *value,
            rank: 1 + valued.iter().filter(|(_, v)| v > value).count() as u32,
        })
        .collect()
}

/// A ranking to publish, with an id derived from its content and from the publication it
/// replaces: publishing unchanged figures again sends the same id (the log writes nothing).
#[derive(Debug, Clone, PartialEq)]
pub struct Publication {
    /// The event's id.
    pub id: uuid::Uuid,
    /// The event.
    pub event: RankingPublished,
}

/// The rankings of `month` whose figures differ from what is published (all of them the
/// first time).
pub fn changes(projections: &Projections, month: MonthKey) -> Result<Vec<Publication>> {
    use sha2::Digest;
    let inputs = inputs(projections, month)?;
    let changed = compute(&inputs, month)
        .into_iter()
        .filter_map(|event| {
            let key = (event.scope.clone(), event.metric.as_str().to_owned());
            let previous = inputs
                .published
                .get(&key)
                .map(|(position, entries)| Previous {
                    position: *position,
                    entries,
                });
            let current: Vec<(String, f64, u32)> = event
                .entries
                .iter()
                .map(|e| (e.agency.clone(), e.value, e.rank))
                .collect();
            if previous.as_ref().is_some_and(|p| *p.entries == current) {
                return None;
            }
            let mut hash = sha2::Sha256::new();
            hash.update(serde_json::to_vec(&event).expect("a ranking serializes"));
            hash.update(previous.map_or(u64::MAX, |p| p.position).to_be_bytes());
            let digest = hash.finalize();
            let bytes: [u8; 16] = digest[..16].try_into().expect("16 bytes");
            let id = uuid::Builder::from_custom_bytes(bytes).into_uuid();
            Some(Publication { id, event })
        })
        .collect();
    Ok(changed)
}

/// The publication a new one would replace.
struct Previous<'a> {
    position: u64,
    entries: &'a Vec<(String, f64, u32)>,
}

/// The months that have dossier activity, oldest first.
pub fn active_months(tables: &Tables) -> Vec<MonthKey> {
    tables.monthly.keys().copied().collect()
}

/// The local month of an instant (µs), for schedulers.
pub fn month_at(micros: i64) -> MonthKey {
    month_of_day(local_day(micros))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(agency: &str, resolved: i64, in_time: i64) -> (&str, Figures) {
        let figures = Figures {
            resolved,
            in_time,
            ..Figures::default()
        };
        (agency, figures)
    }

    #[test]
    fn ties_share_a_rank_and_the_unmeasured_are_left_out() {
        let members = [
            member("a", 10, 9),
            member("b", 20, 18),
            member("c", 4, 4),
            member("d", 0, 0),
            member("e", 5, 1),
        ];
        let entries = rank(&members, Metric::OnTimeRate);
        let got: Vec<(&str, f64, u32)> = entries
            .iter()
            .map(|e| (e.agency.as_str(), e.value, e.rank))
            .collect();
        assert_eq!(
            got,
            vec![
                ("c", 100.0, 1),
                ("a", 90.0, 2),
                ("b", 90.0, 2),
                ("e", 20.0, 4)
            ]
        );
    }

    #[test]
    fn the_scorecard_scales_over_what_is_measured() {
        let only_progress = Figures {
            resolved: 10,
            in_time: 9,
            ..Figures::default()
        };
        assert_eq!(only_progress.value(Metric::Scorecard), Some(90.0));
        let all = Figures {
            received: 10,
            received_online: 5,
            resolved: 10,
            in_time: 10,
            paid: 2,
            paid_online: 1,
            ratings: 2,
            rating_sum: 10,
        };
        // (20 + 6 + 5 + 18) / 60 = 81.67
        assert_eq!(all.value(Metric::Scorecard), Some(81.67));
        assert_eq!(band(81.67), "good");
        assert_eq!(Figures::default().value(Metric::Scorecard), None);
    }
}
