//! The demo history: Vĩnh Phúc 2010–2019 as catalog events, deterministic from a seed.
//!
//! What is real comes from the provinces' own yearly reports and the ICT Index: Vĩnh Phúc's 9 districts and 136 communes,
//! its 1 799 online services at the end of 2019 by level (137 · 299 · 1 198 · 165), the 2019
//! totals of its one-stop desks (314 984 received, 252 856 resolved, 93.8 % early or on time)
//! and of its Public Administration Service Center (36 451 · 34 664 · 98.17 %), and the real
//! ICT Index ranks. Everything else is synthetic: dossier volumes before 2019 (growing as the
//! electronic one-stop system reached every agency), times, deadlines, pauses, payments,
//! ratings, and the other provinces' ICT ranks (marked `"synthetic": true`). Deadlines count
//! working days of the built-in calendar (holidays and Tết off); receipts from 1 July 2019 are
//! `DossierReceived` version 2 (the service's national procedure code and the applicant), the
//! ones before version 1, so the history holds both.

mod places;

pub use places::PROVINCES;
use places::{COMMUNE_NAMES, DEPARTMENTS, FIELDS, VINH_PHUC_DISTRICTS, VINH_PHUC_ICT_RANKS};

use chrono::{Datelike, Duration, NaiveDate, NaiveDateTime, Weekday};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::{self, Write};

/// First and last year of the history.
pub const YEARS: std::ops::RangeInclusive<i32> = 2010..=2019;
/// 2019 one-stop desks of departments, districts and communes [seed 001].
pub const ONE_STOP_2019: Outcomes = Outcomes {
    received: 314_984,
    resolved: 252_856,
    in_time: 237_179,
};
/// 2019 Public Administration Service Center [seed 001].
pub const CENTER_2019: Outcomes = Outcomes {
    received: 36_451,
    resolved: 34_664,
    in_time: 34_030,
};
/// Services by level at the end of 2019 (levels 1, 2, 3, 4) [seed 001].
pub const SERVICES_2019: [usize; 4] = [165, 1_198, 299, 137];

/// One year's dossier totals for a group of agencies: received in the year, resolved in
/// the year, and of those early or on time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcomes {
    /// Received in the year.
    pub received: u32,
    /// Resolved in the year.
    pub resolved: u32,
    /// Resolved early or on time.
    pub in_time: u32,
}

/// One-stop volume of each year before 2019, as a share of 2019's.
const GROWTH: [f64; 9] = [0.10, 0.12, 0.15, 0.19, 0.24, 0.30, 0.38, 0.50, 0.70];
/// Share of dossiers received online through level 3–4 services, by year.
const ONLINE: [f64; 16] = [
    0.0, 0.0, 0.02, 0.05, 0.10, 0.15, 0.22, 0.30, 0.40, 0.50, 0.55, 0.60, 0.65, 0.70, 0.75, 0.80,
];

/// The years of a history with `--reorganise-2025`: on to a fixed end, 31 December 2025.
pub const YEARS_REORGANISED: std::ops::RangeInclusive<i32> = 2010..=2025;

/// When the 2025 reorganisation takes effect (Resolution 202/2025/QH15 of 12 June 2025):
/// 1 July 2025, 00:00 local time.
pub const REORGANISED: &str = "2025-07-01T00:00:00+07:00";

/// The province the reorganisation keeps, and those merged into it (Vĩnh Phúc, and Hòa Bình —
/// synthetic in the demo, as Phú Thọ is).
const MERGED_INTO: &str = "25";
const MERGED: [&str; 2] = ["26", "17"];

/// What to generate.
#[derive(Debug, Clone, Copy)]
pub struct DemoOptions {
    /// Same seed, same bytes.
    pub seed: u64,
    /// Provinces with agencies and dossiers: Vĩnh Phúc first, then others (synthetic).
    pub provinces: usize,
    /// Dossier volume of the other provinces, relative to Vĩnh Phúc's.
    pub scale: f64,
    /// Goes on to 2025 with Phú Thọ and Hòa Bình beside Vĩnh Phúc, and applies the merger of
    /// 1 July 2025 ([`REORGANISED`]). Every province's years after 2019 are synthetic: their
    /// volume follows `scale`, Vĩnh Phúc's too.
    pub reorganise_2025: bool,
    /// Dossiers from this year on (agencies and services are registered from the start).
    pub from_year: i32,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self {
            seed: 1,
            provinces: 1,
            scale: 1.0,
            reorganise_2025: false,
            from_year: *YEARS.start(),
        }
    }
}

/// Writes the history as NDJSON (`{stream, id, type, data, metadata}` per line) and
/// answers how many events it wrote.
pub fn write_demo(options: &DemoOptions, out: &mut dyn Write) -> io::Result<u64> {
    let mut writer = Writer {
        out,
        ids: ChaCha8Rng::seed_from_u64(options.seed ^ 0x1d5),
        written: 0,
    };
    let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
    for (code, name) in PROVINCES {
        writer.agency(code, name, "province", None, code)?;
    }
    ict_index(&mut writer, &mut rng)?;
    // Vĩnh Phúc first; with the reorganisation Phú Thọ and Hòa Bình next, whatever the count.
    let first: &[&str] = match options.reorganise_2025 {
        true => &["26", MERGED_INTO, MERGED[1]],
        false => &["26"],
    };
    let others = PROVINCES
        .iter()
        .map(|(code, _)| *code)
        .filter(|c| !first.contains(c));
    let count = options.provinces.clamp(first.len(), PROVINCES.len());
    let mut desks = Vec::new();
    for code in first.iter().copied().chain(others).take(count) {
        let mut province = Province::new(code, &mut rng);
        if options.reorganise_2025 && code != "26" {
            // Their agencies are made up: their names say so.
            for agency in &mut province.agencies {
                agency.name.push_str(" (mô phỏng)");
            }
        }
        province.register(&mut writer)?;
        let scale = if code == "26" {
            1.0
        } else {
            options.scale * rng.random_range(0.5..2.0)
        };
        let later_scale = match (code, options.reorganise_2025) {
            ("26", true) => options.scale,
            _ => scale,
        };
        desks.push(Desks::new(province, (scale, later_scale), options.seed));
    }
    let years = match options.reorganise_2025 {
        true => YEARS_REORGANISED,
        false => YEARS,
    };
    let years = options.from_year.max(*years.start())..=*years.end();
    write_dossiers(&mut writer, &mut desks, years, options.reorganise_2025)?;
    Ok(writer.written)
}

/// One province's desks while its dossiers are written: its own random stream, so a
/// province's history does not depend on how the others interleave with it.
struct Desks {
    province: Province,
    /// The volume of its years up to 2019, and after.
    scale: f64,
    later_scale: f64,
    rng: ChaCha8Rng,
    one_stop: Vec<usize>,
    center: Vec<usize>,
    serial: u64,
}

impl Desks {
    fn new(province: Province, (scale, later_scale): (f64, f64), seed: u64) -> Self {
        let code: u64 = province.code.parse().unwrap_or(0);
        let (center, one_stop) =
            (0..province.agencies.len()).partition(|a| province.agencies[*a].kind == Kind::Center);
        Self {
            rng: ChaCha8Rng::seed_from_u64(seed ^ 0xd055_1e55 ^ (code << 32)),
            province,
            scale,
            later_scale,
            one_stop,
            center,
            serial: 0,
        }
    }
}

/// Every province's dossiers in the order they were received, as a national log is appended
/// while time passes (so months end, and are sealed, in the order of the log).
fn write_dossiers(
    writer: &mut Writer,
    desks: &mut [Desks],
    years: std::ops::RangeInclusive<i32>,
    reorganise: bool,
) -> io::Result<()> {
    use std::cmp::Reverse;
    let reorganised_at = NaiveDateTime::parse_from_str(&REORGANISED[..19], "%Y-%m-%dT%H:%M:%S")
        .expect("the reorganisation's time");
    // Once the reorganisation is written: which agency receives in place of which.
    let mut successors: Option<HashMap<String, String>> = None;
    for year in years {
        let mut plans = Vec::new();
        for (d, desk) in desks.iter_mut().enumerate() {
            let scale = if year > 2019 {
                desk.later_scale
            } else {
                desk.scale
            };
            for group in [Group::OneStop, Group::Center] {
                if let Some(outcomes) = group.outcomes(year, scale) {
                    plans.push((
                        d,
                        group,
                        YearPlan::new(year, group, outcomes, &mut desk.rng),
                    ));
                }
            }
        }
        let mut next = std::collections::BinaryHeap::new();
        for (k, (_, _, plan)) in plans.iter().enumerate() {
            if let Some(first) = plan.receipts.first() {
                next.push(Reverse((*first, k, 0)));
            }
        }
        while let Some(Reverse((received, k, i))) = next.pop() {
            let (d, group, plan) = &plans[k];
            let desk = &mut desks[*d];
            let pool = match group {
                Group::OneStop => &desk.one_stop,
                Group::Center => &desk.center,
            };
            let agency = pick_agency(&desk.province.agencies, pool, &mut desk.rng);
            if reorganise && successors.is_none() && received >= reorganised_at {
                let provinces = desks.iter().map(|desk| &desk.province).collect();
                successors = Some(write_reorganisation(writer, provinces)?);
            }
            let desk = &mut desks[*d];
            desk.serial += 1;
            let id = format!("{}.{year}.{:07}", desk.province.code, desk.serial);
            let fate = plan.fates[i];
            let code = &desk.province.agencies[agency].code;
            let receiver = successors
                .as_ref()
                .and_then(|s| s.get(code))
                .unwrap_or(code)
                .clone();
            desk.province.dossier(
                writer,
                &mut desk.rng,
                &id,
                (agency, &receiver),
                received,
                fate,
                year,
            )?;
            if let Some(after) = plan.receipts.get(i + 1) {
                next.push(Reverse((*after, k, i + 1)));
            }
        }
    }
    Ok(())
}

struct Writer<'a> {
    out: &'a mut dyn Write,
    ids: ChaCha8Rng,
    written: u64,
}

impl Writer<'_> {
    fn event(&mut self, stream: &str, event_type: &str, data: Value) -> io::Result<()> {
        self.event_with(stream, event_type, data, None)
    }

    fn event_with(
        &mut self,
        stream: &str,
        event_type: &str,
        data: Value,
        metadata: Option<Value>,
    ) -> io::Result<()> {
        let id = uuid::Builder::from_random_bytes(self.ids.random()).into_uuid();
        let mut line = json!({"stream": stream, "id": id, "type": event_type, "data": data});
        if let Some(metadata) = metadata {
            line["metadata"] = metadata;
        }
        serde_json::to_writer(&mut *self.out, &line)?;
        self.out.write_all(b"\n")?;
        self.written += 1;
        Ok(())
    }

    fn agency(
        &mut self,
        code: &str,
        name: &str,
        kind: &str,
        parent: Option<&str>,
        province: &str,
    ) -> io::Result<()> {
        let data = json!({"code": code, "name": name, "kind": kind, "parent": parent, "province": province});
        self.event(&format!("agency-{code}"), "AgencyRegistered", data)
    }
}

/// The reorganisation of 1 July 2025 as events, in an order the write model takes: the
/// departments and Center of Vĩnh Phúc and Hòa Bình merged into Phú Thọ's; in every district
/// of the three, the communes merged two by two into new communes of Phú Thọ (the last of an
/// odd number moved under the province), then the district dissolved; then Vĩnh Phúc and Hòa
/// Bình merged into Phú Thọ. The commune mapping is synthetic, and the new communes' names
/// say so. Answers which agency receives dossiers in place of which from then on.
fn write_reorganisation(
    writer: &mut Writer,
    provinces: Vec<&Province>,
) -> io::Result<HashMap<String, String>> {
    let at = json!(REORGANISED);
    let mut successors = HashMap::new();
    fn merge(
        writer: &mut Writer,
        successors: &mut HashMap<String, String>,
        code: &str,
        into: &str,
    ) -> io::Result<()> {
        successors.insert(code.to_owned(), into.to_owned());
        let data = json!({"into": into, "at": REORGANISED});
        writer.event(&format!("agency-{code}"), "AgencyMerged", data)
    }
    let mut new_communes = 0;
    let reorganised = provinces
        .iter()
        .filter(|p| p.code == MERGED_INTO || MERGED.contains(&p.code));
    for province in reorganised {
        let code = province.code;
        for agency in &province.agencies {
            let desk = matches!(agency.kind, Kind::Department | Kind::Center);
            if desk && code != MERGED_INTO {
                let into = format!("{MERGED_INTO}{}", &agency.code[code.len()..]);
                merge(writer, &mut successors, &agency.code, &into)?;
            }
        }
        for district in province
            .agencies
            .iter()
            .filter(|a| a.kind == Kind::District)
        {
            let communes: Vec<&Agency> = province
                .agencies
                .iter()
                .filter(|a| a.parent == district.code)
                .collect();
            let mut first = None;
            for pair in communes.chunks(2) {
                let successor = match pair {
                    [one, two] => {
                        new_communes += 1;
                        let new = format!("{MERGED_INTO}.M{new_communes:04}");
                        let name = format!(
                            "Xã mới số {new_communes} ({} + {}, sáp nhập mô phỏng)",
                            one.name, two.name
                        );
                        let data = json!({"code": new, "name": name, "kind": "commune",
                            "parent": MERGED_INTO, "province": MERGED_INTO, "at": at});
                        writer.event(&format!("agency-{new}"), "AgencyRegistered", data)?;
                        merge(writer, &mut successors, &one.code, &new)?;
                        merge(writer, &mut successors, &two.code, &new)?;
                        new
                    }
                    [alone] => {
                        writer.event(
                            &format!("agency-{}", alone.code),
                            "AgencyMoved",
                            json!({"parent": MERGED_INTO, "at": at}),
                        )?;
                        alone.code.clone()
                    }
                    _ => unreachable!("chunks of two"),
                };
                first.get_or_insert(successor);
            }
            // The district's desk hands its dossiers to the first commune formed from it.
            let successor = first.unwrap_or_else(|| MERGED_INTO.to_owned());
            successors.insert(district.code.clone(), successor);
            writer.event(
                &format!("agency-{}", district.code),
                "AgencyDissolved",
                json!({"at": at}),
            )?;
        }
        if code != MERGED_INTO {
            merge(writer, &mut successors, code, MERGED_INTO)?;
        }
    }
    Ok(successors)
}

/// A local time as RFC 3339 with the +07:00 offset.
fn local(time: NaiveDateTime) -> String {
    format!("{}+07:00", time.format("%Y-%m-%dT%H:%M:%S"))
}

fn date(year: i32, month: u32, day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(year, month, day).expect("a real date")
}

/// Receipts from this day on are written in `DossierReceived` version 2.
const VERSION_2_FROM: NaiveDate = NaiveDate::from_ymd_opt(2019, 7, 1).expect("a date");

/// `days` working days after `from` (without weekends, public holidays and the days given off
/// for them: the built-in calendar), at 17:00.
fn deadline(from: NaiveDateTime, days: u32) -> NaiveDateTime {
    let calendar = &*crate::calendar::BUILT_IN;
    let day = crate::calendar::days_since_epoch(from.date());
    let due = calendar
        .add_working_days(day, i64::from(days))
        .expect("the demo's years are in the calendar");
    (from.date() + Duration::days(i64::from(due - day)))
        .and_hms_opt(17, 0, 0)
        .expect("a valid time")
}

/// The real facts of the ICT Index: (year, province, rank, score).
fn real_ict(year: i32) -> Vec<(&'static str, u8, Option<f64>)> {
    let mut facts = vec![("26", VINH_PHUC_ICT_RANKS[(year - 2010) as usize], None)];
    facts.push(("48", 1, (year == 2019).then_some(0.8654)));
    match year {
        2019 => facts.extend([("46", 2, Some(0.8046)), ("22", 3, Some(0.7350))]),
        2017 | 2018 => facts.extend([("79", 2, None), ("01", 3, None)]),
        _ => {}
    }
    facts
}

/// Every province's rank, each year: the real ones, and the rest made up so that they move as
/// real ranks do — a few places a year, not a new draw each year. Each made-up province has a
/// standing that drifts a little every year (a province with real ranks in some years starts
/// at its real mean, so its made-up years lie near them); each year the provinces without a
/// real rank take the ranks left free in the order of their standing.
fn ict_index(writer: &mut Writer, rng: &mut ChaCha8Rng) -> io::Result<()> {
    let mut standing: Vec<(&str, f64)> = PROVINCES
        .iter()
        .map(|&(code, _)| {
            let real: Vec<f64> = YEARS
                .flat_map(real_ict)
                .filter(|fact| fact.0 == code)
                .map(|fact| f64::from(fact.1))
                .collect();
            let start = if real.is_empty() {
                rng.random_range(1.0..63.0)
            } else {
                real.iter().sum::<f64>() / real.len() as f64
            };
            (code, start)
        })
        .collect();
    for year in YEARS {
        let facts = real_ict(year);
        for (_, at) in &mut standing {
            *at += rng.random_range(-2.5..2.5);
        }
        let free_ranks = (1..=63).filter(|r| !facts.iter().any(|f| f.1 == *r));
        let mut others: Vec<&(&str, f64)> = standing
            .iter()
            .filter(|(code, _)| !facts.iter().any(|f| f.0 == *code))
            .collect();
        others.sort_by(|a, b| a.1.total_cmp(&b.1));
        let mut rows: Vec<(&str, u8, Option<f64>, bool)> =
            facts.iter().map(|&(p, r, s)| (p, r, s, false)).collect();
        for (rank, (province, _)) in free_ranks.zip(others) {
            let score = 0.80 - 0.0065 * f64::from(rank - 1) - 0.01 * f64::from(2019 - year);
            rows.push((
                province,
                rank,
                Some((score * 10_000.0).round() / 10_000.0),
                true,
            ));
        }
        rows.sort_by_key(|row| row.1);
        for (province, rank, score, synthetic) in rows {
            let metadata = if synthetic {
                json!({"generator": "chiso demo", "synthetic": true})
            } else {
                json!({"generator": "chiso demo", "synthetic": false, "source": "DOMAIN.md; seed 001, appendix 1"})
            };
            let data = json!({"year": year, "province": province, "rank": rank, "score": score});
            writer.event_with(
                &format!("ictindex-{year}"),
                "IctIndexPublished",
                data,
                Some(metadata),
            )?;
        }
    }
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Department,
    Center,
    District,
    Commune,
}

struct Agency {
    code: String,
    name: String,
    kind: Kind,
    parent: String,
    /// Relative share of the province's one-stop dossiers.
    weight: f64,
    /// Services its dossiers use, by index into the province's services (sorted by launch).
    services: Vec<usize>,
}

struct Service {
    code: String,
    agency: usize,
    name: String,
    field: &'static str,
    /// (level, since) in time order.
    levels: Vec<(u8, NaiveDateTime)>,
    /// Legal deadline in working days.
    deadline_days: u32,
}

impl Service {
    fn level_at(&self, at: NaiveDateTime) -> u8 {
        self.levels
            .iter()
            .rev()
            .find(|(_, since)| *since <= at)
            .map_or(self.levels[0].0, |l| l.0)
    }
}

struct Province {
    code: &'static str,
    agencies: Vec<Agency>,
    services: Vec<Service>,
}

impl Province {
    fn new(code: &'static str, rng: &mut ChaCha8Rng) -> Self {
        let mut agencies = Vec::new();
        for (n, name) in DEPARTMENTS.iter().enumerate() {
            let weight = 0.40 / 20.0 * rng.random_range(0.5..1.5);
            agencies.push(Agency::new(
                format!("{code}.S{:02}", n + 1),
                (*name).into(),
                Kind::Department,
                code,
                weight,
            ));
        }
        agencies.push(Agency::new(
            format!("{code}.TTPVHCC"),
            "Trung tâm Phục vụ hành chính công tỉnh".into(),
            Kind::Center,
            code,
            0.0,
        ));
        let districts: Vec<(String, String, usize)> = if code == "26" {
            VINH_PHUC_DISTRICTS
                .iter()
                .map(|(c, n, k)| ((*c).into(), (*n).into(), *k))
                .collect()
        } else {
            (1..=6)
                .map(|d| (format!("D{d}"), format!("Huyện số {d}"), 8))
                .collect()
        };
        let mut commune_code = 8_866;
        for (district_code, district_name, communes) in districts {
            let district = format!("{code}.{district_code}");
            agencies.push(Agency::new(
                district.clone(),
                district_name,
                Kind::District,
                code,
                0.30 / 9.0 * communes as f64 / 15.0,
            ));
            for c in 0..communes {
                let name = COMMUNE_NAMES[(commune_code - 8_866) % COMMUNE_NAMES.len()];
                let commune = Agency::new(
                    format!("{district}.{commune_code:05}"),
                    name.into(),
                    Kind::Commune,
                    &district,
                    0.30 / 136.0 * rng.random_range(0.6..1.4),
                );
                agencies.push(commune);
                commune_code += 1 + (c % 3 == 2) as usize;
            }
        }
        let services = plan_services(code, &agencies, rng);
        let mut province = Self {
            code,
            agencies,
            services,
        };
        province.assign_services();
        province
    }

    /// Departments and districts offer services; the Center takes departments' dossiers,
    /// communes their district's.
    fn assign_services(&mut self) {
        for (index, service) in self.services.iter().enumerate() {
            self.agencies[service.agency].services.push(index);
        }
        let departments: Vec<usize> = self
            .services
            .iter()
            .enumerate()
            .filter(|(_, s)| self.agencies[s.agency].kind == Kind::Department)
            .map(|(i, _)| i)
            .collect();
        for a in 0..self.agencies.len() {
            let pool = match self.agencies[a].kind {
                Kind::Center => departments.clone(),
                Kind::Commune => {
                    let parent = self.agencies[a].parent.clone();
                    let district = self
                        .agencies
                        .iter()
                        .find(|d| d.code == parent)
                        .expect("the commune's district");
                    district.services.clone()
                }
                _ => continue,
            };
            self.agencies[a].services = pool;
        }
        for agency in &mut self.agencies {
            let services = &self.services;
            agency.services.sort_by_key(|s| services[*s].levels[0].1);
        }
    }

    fn register(&self, writer: &mut Writer) -> io::Result<()> {
        for agency in &self.agencies {
            let kind = match agency.kind {
                Kind::Department => "department",
                Kind::Center => "center",
                Kind::District => "district",
                Kind::Commune => "commune",
            };
            writer.agency(
                &agency.code,
                &agency.name,
                kind,
                Some(&agency.parent),
                self.code,
            )?;
        }
        for service in &self.services {
            let stream = format!("service-{}", service.code);
            let (level, at) = service.levels[0];
            let data = json!({"code": service.code, "agency": self.agencies[service.agency].code, "name": service.name, "field": service.field, "level": level, "at": local(at)});
            writer.event(&stream, "ServiceLaunched", data)?;
            for &(level, at) in &service.levels[1..] {
                writer.event(
                    &stream,
                    "ServiceLevelChanged",
                    json!({"level": level, "at": local(at)}),
                )?;
            }
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    /// One dossier, for a service of `agency` (an index), received by the agency `receiver`
    /// (its code: the agency's own, or its successor's after the reorganisation).
    #[allow(clippy::too_many_arguments)]
    fn dossier(
        &self,
        writer: &mut Writer,
        rng: &mut ChaCha8Rng,
        id: &str,
        (agency, receiver): (usize, &str),
        received: NaiveDateTime,
        fate: Fate,
        year: i32,
    ) -> io::Result<()> {
        let stream = format!("dossier-{id}");
        let service = self.pick_service(agency, received, rng);
        let level = service.level_at(received);
        let channel = if level >= 3 && rng.random_bool(ONLINE[(year - 2010) as usize]) {
            "online"
        } else if rng.random_bool(0.08) {
            "postal"
        } else {
            "direct"
        };
        let due = deadline(received, service.deadline_days);
        let mut data = json!({"agency": receiver, "service": service.code, "channel": channel, "received_at": local(received), "due_at": local(due)});
        if received >= VERSION_2_FROM.and_hms_opt(0, 0, 0).expect("midnight") {
            // The one-stop systems send `DossierReceived` version 2 from mid-2019: the
            // national procedure code (the service's) and the applicant, one in seven a
            // business (by the id, so the random draws of the history stay as they were).
            data["procedure_code"] = json!(service.code);
            let business = id
                .bytes()
                .fold(0u32, |h, b| h.wrapping_mul(31) + u32::from(b))
                % 7
                == 0;
            data["applicant"] = json!(if business { "business" } else { "citizen" });
            writer.event_with(
                &stream,
                "DossierReceived",
                data,
                Some(json!({"$version": 2})),
            )?;
        } else {
            writer.event(&stream, "DossierReceived", data)?;
        }
        let year_end = date(year, 12, 31)
            .and_hms_opt(23, 30, 0)
            .expect("a valid time");
        let mut last = received;
        let mut paused = Duration::zero();
        if rng.random_bool(0.08) && received.date() < date(year, 12, 20) {
            let start = received + Duration::hours(20);
            writer.event(&stream, "DossierPaused", json!({"at": local(start)}))?;
            paused = Duration::days(rng.random_range(1..=5));
            if fate == Fate::Open && rng.random_bool(0.3) {
                return Ok(());
            }
            last = start + paused;
            writer.event(&stream, "DossierResumed", json!({"at": local(last)}))?;
        }
        let effective_due = due + paused;
        let at = match fate {
            Fate::Open => return Ok(()),
            Fate::Withdrawn => {
                let at = (last + Duration::hours(rng.random_range(2..72)))
                    .min(year_end)
                    .max(last + Duration::minutes(1));
                return writer.event(&stream, "DossierWithdrawn", json!({"at": local(at)}));
            }
            Fate::InTime => {
                let earliest = last + Duration::hours(2);
                let latest = effective_due.min(year_end).max(earliest);
                let span = (latest - earliest).num_minutes().max(1);
                earliest + Duration::minutes(rng.random_range(0..span))
            }
            Fate::Late => {
                let room = (year_end.date() - effective_due.date())
                    .num_days()
                    .clamp(1, 20);
                (effective_due.date() + Duration::days(rng.random_range(1..=room)))
                    .and_hms_opt(10, 0, 0)
                    .expect("a valid time")
            }
        };
        let outcome = if rng.random_bool(0.95) {
            "approved"
        } else {
            "rejected"
        };
        writer.event(
            &stream,
            "DossierResolved",
            json!({"at": local(at), "outcome": outcome}),
        )?;
        if level >= 2 && rng.random_bool(0.3) {
            let online = channel == "online" && level == 4;
            let amount = [50_000, 100_000, 150_000, 300_000][rng.random_range(0..4)];
            writer.event(
                &stream,
                "DossierPaid",
                json!({"at": local(at + Duration::minutes(5)), "online": online, "amount": amount}),
            )?;
        }
        if year >= 2015 && rng.random_bool(0.25) {
            let score = if fate == Fate::Late {
                rng.random_range(1..=4)
            } else {
                [3, 4, 4, 5, 5, 5][rng.random_range(0..6)]
            };
            writer.event(
                &stream,
                "DossierRated",
                json!({"at": local(at + Duration::hours(1)), "score": score}),
            )?;
        }
        Ok(())
    }

    /// A service of the agency launched by `at` (the agency's first one otherwise).
    fn pick_service(&self, agency: usize, at: NaiveDateTime, rng: &mut ChaCha8Rng) -> &Service {
        let pool = &self.agencies[agency].services;
        let launched = pool
            .partition_point(|s| self.services[*s].levels[0].1 <= at)
            .max(1);
        &self.services[pool[rng.random_range(0..launched)]]
    }
}

impl Agency {
    fn new(code: String, name: String, kind: Kind, parent: &str, weight: f64) -> Self {
        Self {
            code,
            name,
            kind,
            parent: parent.into(),
            weight,
            services: Vec::new(),
        }
    }
}

/// Services with exact final levels: launched 2010–2017 at level 1 or 2, raised level by level.
fn plan_services(province: &str, agencies: &[Agency], rng: &mut ChaCha8Rng) -> Vec<Service> {
    let mut finals: Vec<u8> = SERVICES_2019
        .iter()
        .enumerate()
        .flat_map(|(l, n)| std::iter::repeat_n(l as u8 + 1, *n))
        .collect();
    finals.shuffle(rng);
    let owners: Vec<usize> = (0..agencies.len())
        .filter(|a| matches!(agencies[*a].kind, Kind::Department | Kind::District))
        .collect();
    let departments = owners
        .iter()
        .filter(|a| agencies[**a].kind == Kind::Department)
        .count();
    let districts = owners.len() - departments;
    let mut services = Vec::with_capacity(finals.len());
    let mut has_service = vec![false; agencies.len()];
    let (mut to_departments, mut to_districts) = (0, 0);
    for (n, final_level) in finals.into_iter().enumerate() {
        // 85 % of the services belong to departments, the rest to districts.
        let owner = if n % 20 < 17 {
            to_departments += 1;
            owners[to_departments % departments]
        } else {
            to_districts += 1;
            owners[departments + to_districts % districts]
        };
        // Each agency's first service is there from the start.
        let launched = if !std::mem::replace(&mut has_service[owner], true) {
            date(2010, 1, 4).and_hms_opt(7, 0, 0).expect("a valid time")
        } else {
            let day = rng.random_range(0..(8 * 365));
            (date(2010, 1, 4) + Duration::days(day))
                .and_hms_opt(8, 0, 0)
                .expect("a valid time")
        };
        let start_level = if final_level == 1 || rng.random_bool(0.4) {
            1
        } else {
            2
        };
        let mut levels = vec![(start_level, launched)];
        let mut at = launched;
        for level in start_level + 1..=final_level {
            let not_before = match level {
                3 => date(2013, 1, 1),
                4 => date(2015, 6, 1),
                _ => date(2010, 6, 1),
            }
            .and_hms_opt(8, 0, 0)
            .expect("a valid time");
            let from = at.max(not_before) + Duration::days(30);
            let room = (date(2019, 12, 1)
                .and_hms_opt(8, 0, 0)
                .expect("a valid time")
                - from)
                .num_days()
                .max(1);
            at = from + Duration::days(rng.random_range(0..room) / 2);
            levels.push((level, at));
        }
        let agency = &agencies[owner];
        let field = FIELDS[n % FIELDS.len()];
        services.push(Service {
            code: format!("{}.{:06}.000.00.00.H{province}", 1 + n % 2, 1_000 + n),
            agency: owner,
            name: format!(
                "Thủ tục {} số {} ({})",
                field.to_lowercase(),
                n + 1,
                agency.name
            ),
            field,
            levels,
            deadline_days: [1, 3, 5, 7, 10, 15][rng.random_range(0..6)],
        });
    }
    services
}

fn pick_agency(agencies: &[Agency], pool: &[usize], rng: &mut ChaCha8Rng) -> usize {
    if pool.len() == 1 {
        return pool[0];
    }
    let total: f64 = pool.iter().map(|a| agencies[*a].weight).sum();
    let mut point = rng.random_range(0.0..total);
    for &a in pool {
        point -= agencies[a].weight;
        if point < 0.0 {
            return a;
        }
    }
    pool[pool.len() - 1]
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Group {
    OneStop,
    Center,
}

impl Group {
    /// The year's totals: exact in 2019, grown towards it before; the Center opened in
    /// October 2018.
    fn outcomes(self, year: i32, scale: f64) -> Option<Outcomes> {
        let exact = match self {
            Self::OneStop => ONE_STOP_2019,
            Self::Center => CENTER_2019,
        };
        let share = match (self, year) {
            (_, 2019) => 1.0,
            // After the seeds: 4 % more a year.
            (_, 2020..) => 1.0 + 0.04 * f64::from(year - 2019),
            (Self::OneStop, _) => GROWTH[(year - 2010) as usize],
            (Self::Center, 2018) => 0.25,
            (Self::Center, _) => return None,
        };
        let received = (f64::from(exact.received) * share * scale).round() as u32;
        if year == 2019 && scale == 1.0 {
            return Some(exact);
        }
        // Outside 2019 every dossier closes within its year: 2 % withdrawn, the rest resolved,
        // late falling from 14 % in 2010 by 0.8 points a year (2 % in 2025).
        let resolved = received - received / 50;
        let late = f64::from(resolved) * (0.14 - 0.008 * f64::from(year - 2010));
        Some(Outcomes {
            received,
            resolved,
            in_time: resolved - late.round() as u32,
        })
    }
}

/// How a dossier ends within its year.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Fate {
    InTime,
    Late,
    Withdrawn,
    Open,
}

/// A year's receipt times (in order) and each dossier's fate, so the totals come out exact.
struct YearPlan {
    receipts: Vec<NaiveDateTime>,
    fates: Vec<Fate>,
}

impl YearPlan {
    fn new(year: i32, group: Group, outcomes: Outcomes, rng: &mut ChaCha8Rng) -> Self {
        let receipts = receipt_times(year, group, outcomes.received, rng);
        let n = receipts.len();
        let mut fates = vec![Fate::InTime; n];
        let unresolved = n - outcomes.resolved as usize;
        // In 2019 the unresolved are withdrawn (1 in 12) or still open at the end of the year.
        let (open, withdrawn) = if year == 2019 {
            let withdrawn = unresolved / 12;
            (unresolved - withdrawn, withdrawn)
        } else {
            (0, unresolved)
        };
        // 70 % of the open ones among the last third of the year's receipts, the rest anywhere.
        let recent = open * 7 / 10;
        let mut tail: Vec<usize> = (n - (n / 3).max(recent)..n).collect();
        tail.shuffle(rng);
        for &i in &tail[..recent] {
            fates[i] = Fate::Open;
        }
        let mut rest: Vec<usize> = (0..n).filter(|&i| fates[i] != Fate::Open).collect();
        rest.shuffle(rng);
        let (stalled, rest) = rest.split_at(open - recent);
        let (gone, _) = rest.split_at(withdrawn);
        for &i in stalled {
            fates[i] = Fate::Open;
        }
        for &i in gone {
            fates[i] = Fate::Withdrawn;
        }
        // Late ones need room before the year ends: received by 1 December.
        let cutoff = date(year, 12, 1)
            .and_hms_opt(0, 0, 0)
            .expect("a valid time");
        let mut candidates: Vec<usize> = (0..n)
            .filter(|&i| fates[i] == Fate::InTime && receipts[i] < cutoff)
            .collect();
        candidates.shuffle(rng);
        let late = (outcomes.resolved - outcomes.in_time) as usize;
        for &i in &candidates[..late.min(candidates.len())] {
            fates[i] = Fate::Late;
        }
        Self { receipts, fates }
    }
}

/// `count` receipt times over the year's working days, weighted: Saturdays light, Sundays
/// and the days around Tết closed, the week before Tết busy.
fn receipt_times(year: i32, group: Group, count: u32, rng: &mut ChaCha8Rng) -> Vec<NaiveDateTime> {
    let tet = crate::calendar::tet(year).expect("the demo's years are in the calendar");
    let first = if group == Group::Center && year == 2018 {
        date(2018, 10, 1)
    } else {
        date(year, 1, 1)
    };
    let days: Vec<(NaiveDate, f64)> = first
        .iter_days()
        .take_while(|d| d.year() == year)
        .map(|day| {
            let from_tet = (day - tet).num_days();
            let weight = match (day.weekday(), from_tet) {
                (_, -3..=4) | (Weekday::Sun, _) => 0.0,
                (_, 5..=9) => 0.5,
                (Weekday::Sat, _) => 0.2,
                (_, -10..=-4) => 1.3,
                _ => 1.0,
            };
            (day, weight)
        })
        .collect();
    let total: f64 = days.iter().map(|(_, w)| w).sum();
    // Largest remainders, so the counts add up exactly.
    let mut shares: Vec<(usize, u32, f64)> = days
        .iter()
        .enumerate()
        .map(|(i, (_, w))| {
            let exact = f64::from(count) * w / total;
            (i, exact.floor() as u32, exact - exact.floor())
        })
        .collect();
    let missing = count - shares.iter().map(|s| s.1).sum::<u32>();
    let mut by_remainder: Vec<usize> = (0..shares.len()).collect();
    by_remainder.sort_by(|a, b| shares[*b].2.total_cmp(&shares[*a].2).then(a.cmp(b)));
    for &i in &by_remainder[..missing as usize] {
        shares[i].1 += 1;
    }
    let mut times = Vec::with_capacity(count as usize);
    for (i, n, _) in shares {
        let mut day_times: Vec<NaiveDateTime> = (0..n)
            .map(|_| {
                days[i].0.and_hms_opt(7, 30, 0).expect("a valid time")
                    + Duration::minutes(rng.random_range(0..570))
            })
            .collect();
        day_times.sort();
        times.extend(day_times);
    }
    times
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_skip_weekends_and_holidays() {
        let friday = date(2019, 3, 1).and_hms_opt(9, 0, 0).unwrap();
        assert_eq!(deadline(friday, 1).date(), date(2019, 3, 4));
        assert_eq!(deadline(friday, 5).date(), date(2019, 3, 8));
        // Tết 2019: 4–8 February off.
        let before_tet = date(2019, 2, 1).and_hms_opt(9, 0, 0).unwrap();
        assert_eq!(deadline(before_tet, 1).date(), date(2019, 2, 11));
    }

    #[test]
    fn a_year_plan_has_exact_totals() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let plan = YearPlan::new(2019, Group::Center, CENTER_2019, &mut rng);
        let count = |fate| plan.fates.iter().filter(|f| **f == fate).count() as u32;
        assert_eq!(plan.receipts.len() as u32, CENTER_2019.received);
        assert_eq!(
            count(Fate::InTime) + count(Fate::Late),
            CENTER_2019.resolved
        );
        assert_eq!(count(Fate::InTime), CENTER_2019.in_time);
        assert!(plan.receipts.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn provinces_are_63() {
        let mut codes: Vec<&str> = PROVINCES.iter().map(|p| p.0).collect();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), 63);
        assert_eq!(VINH_PHUC_DISTRICTS.iter().map(|d| d.2).sum::<usize>(), 136);
    }
}
