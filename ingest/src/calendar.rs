//! The working-day calendar: which local dates of 2010–2030 are working days for Vietnam's
//! public sector, and why the others are not.
//!
//! Three layers, each able to override the one before:
//!
//! 1. the Labour Code's holidays, year by year under the Code in force on the day (1994 Art. 73
//!    to 30 April 2013, 2012 Art. 115 to 2020, 2019 Art. 112 from 2021): New Year's Day; Tết,
//!    the last day of the lunar year and the first days of the new one (4 in all until Tết 2013,
//!    the last under the 1994 Code; 5 from Tết 2014); Hùng Kings' day (10/3 lunar); 30 April;
//!    1 May; 2 September, and 3 September from 2021 (the Code says a day before or after: the
//!    Prime Minister picks one each year);
//! 2. the schedules the government announced before chiso took them as events ([`data`]);
//! 3. the announcements in the log: `HolidayDeclared` (the days of one holiday in one year,
//!    replacing layers 1–2 for that holiday and year) and `WorkdaySwapped` (a weekday off for a
//!    weekend day worked), in log order.
//!
//! Saturdays and Sundays are not working days; a holiday falling on one gives the next working
//! day off that is not already a holiday or such a day (Labour Code 2019 Art. 111(3)), so a run
//! of weekend holidays gives a run of days after it. Swaps apply last.

mod data;

use chrono::{Datelike, NaiveDate, Weekday};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The years the calendar covers: the lunar holidays are known for these.
pub const CALENDAR_YEARS: std::ops::RangeInclusive<i32> = 2010..=2030;

/// An announcement folded from the log (or one of [`data::ANNOUNCED`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Declaration {
    /// The days off of `holiday` in `year` (`HolidayDeclared` in `calendar-{year}`).
    Holiday {
        /// The stream's year.
        year: i32,
        /// Its key (`tet`, …).
        holiday: String,
        /// Its name in the calendar.
        name: String,
        /// Its days off.
        dates: Vec<NaiveDate>,
        /// The act.
        source: String,
    },
    /// `WorkdaySwapped`: `from` off, `to` worked.
    Swap {
        /// The weekday off.
        from: NaiveDate,
        /// The weekend day worked.
        to: NaiveDate,
        /// The act.
        source: String,
    },
}

/// One local date of the calendar.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Day {
    /// Whether civil servants work that day.
    pub working: bool,
    /// Why a day is off (or the holiday a weekend day carries).
    pub holiday: Option<Arc<str>>,
    /// The act that makes it so.
    pub source: Option<Arc<str>>,
}

/// The calendar of [`CALENDAR_YEARS`], with the working days counted for constant-time sums.
#[derive(Debug)]
pub struct Calendar {
    /// 2010-01-01, and as a local day (days since 1970-01-01).
    first: NaiveDate,
    first_day: i32,
    days: Vec<Day>,
    /// `prefix[i]`: the working days among `days[..i]`.
    prefix: Vec<u32>,
}

/// The holidays of the Labour Code, by key: their name, and their days in a year.
const HOLIDAYS: [(&str, &str); 6] = [
    ("new_year", "Tết Dương lịch"),
    ("tet", "Tết Nguyên đán"),
    ("hung_kings", "Giỗ Tổ Hùng Vương"),
    (
        "reunification",
        "Ngày Giải phóng miền Nam, thống nhất đất nước",
    ),
    ("labour_day", "Ngày Quốc tế Lao động"),
    ("national_day", "Quốc khánh"),
];

/// The article of the Labour Code that gives the holidays of a day, and the one that moves a
/// holiday off a weekend.
fn code_on(date: NaiveDate) -> (&'static str, &'static str) {
    if date < ymd(2013, 5, 1) {
        (
            "Bộ luật Lao động 1994, Điều 73",
            "Bộ luật Lao động 1994, Điều 73",
        )
    } else if date.year() < 2021 {
        (
            "Bộ luật Lao động 2012, Điều 115",
            "Bộ luật Lao động 2012, Điều 115 khoản 3",
        )
    } else {
        (
            "Bộ luật Lao động 2019, Điều 112",
            "Bộ luật Lao động 2019, Điều 111 khoản 3",
        )
    }
}

fn ymd(year: i32, month: u32, day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(year, month, day).expect("a calendar date")
}

/// The Code's days for each holiday of `year`.
fn statutory(year: i32) -> Vec<(&'static str, Vec<NaiveDate>)> {
    let &(_, (tet_month, tet_day), (hung_month, hung_day)) = data::LUNAR
        .iter()
        .find(|(y, _, _)| *y == year)
        .expect("the lunar table covers the calendar's years");
    let tet = ymd(year, tet_month, tet_day);
    // The last day of the old year and the first days of the new: 4 in all to Tết 2013,
    // which came before the 2012 Code took effect (1 May 2013); 5 from Tết 2014.
    let tet_days = if tet < ymd(2013, 5, 1) { 4 } else { 5 };
    let national_day = if year >= 2021 {
        vec![ymd(year, 9, 2), ymd(year, 9, 3)]
    } else {
        vec![ymd(year, 9, 2)]
    };
    vec![
        ("new_year", vec![ymd(year, 1, 1)]),
        (
            "tet",
            (0..tet_days)
                .map(|i| tet.pred_opt().expect("a date") + chrono::Days::new(i))
                .collect(),
        ),
        ("hung_kings", vec![ymd(year, hung_month, hung_day)]),
        ("reunification", vec![ymd(year, 4, 30)]),
        ("labour_day", vec![ymd(year, 5, 1)]),
        ("national_day", national_day),
    ]
}

/// The announcements of [`data::ANNOUNCED`] as declarations.
fn announced() -> impl Iterator<Item = Declaration> {
    data::ANNOUNCED.iter().map(|announced| match *announced {
        data::Announced::Holiday {
            year,
            holiday,
            dates,
            source,
        } => Declaration::Holiday {
            year,
            holiday: holiday.into(),
            name: holiday_name(holiday).unwrap_or(holiday).into(),
            dates: dates.iter().map(|&(m, d)| ymd(year, m, d)).collect(),
            source: source.into(),
        },
        data::Announced::Swap { from, to, source } => Declaration::Swap {
            from: ymd(from.0, from.1, from.2),
            to: ymd(to.0, to.1, to.2),
            source: source.into(),
        },
    })
}

/// The calendar without announcements from the log: the Code's holidays and the schedules
/// announced up to 2026 (what the demo's deadlines count).
pub static BUILT_IN: std::sync::LazyLock<Calendar> =
    std::sync::LazyLock::new(|| Calendar::new(&[]));

/// Tết (1/1 of the lunar year) in `year`, if the calendar covers it.
pub fn tet(year: i32) -> Option<NaiveDate> {
    let &(_, (month, day), _) = data::LUNAR.iter().find(|(y, _, _)| *y == year)?;
    NaiveDate::from_ymd_opt(year, month, day)
}

fn holiday_name(key: &str) -> Option<&'static str> {
    HOLIDAYS
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, name)| *name)
}

fn weekend(date: NaiveDate) -> bool {
    matches!(date.weekday(), Weekday::Sat | Weekday::Sun)
}

impl Calendar {
    /// The calendar with the announcements of the log, `declarations`, in log order.
    pub fn new(declarations: &[Declaration]) -> Self {
        let first = ymd(*CALENDAR_YEARS.start(), 1, 1);
        let last = ymd(*CALENDAR_YEARS.end(), 12, 31);
        let len = (last - first).num_days() as usize + 1;
        let index = |date: NaiveDate| -> Option<usize> {
            let i = (date - first).num_days();
            (0..len as i64).contains(&i).then_some(i as usize)
        };
        let date_at = |i: usize| first + chrono::Days::new(i as u64);
        // Each holiday of each year: its name, days and source.
        type Placed = (Arc<str>, Vec<NaiveDate>, Option<Arc<str>>);
        let mut holidays: BTreeMap<(i32, String), Placed> = BTreeMap::new();
        for year in CALENDAR_YEARS {
            for (key, dates) in statutory(year) {
                let name = holiday_name(key).expect("a holiday of the Code");
                holidays.insert((year, key.into()), (name.into(), dates, None));
            }
        }
        let mut swaps = Vec::new();
        for declaration in announced().chain(declarations.iter().cloned()) {
            match declaration {
                Declaration::Holiday {
                    year,
                    holiday,
                    name,
                    dates,
                    source,
                } => {
                    holidays.insert((year, holiday), (name.into(), dates, Some(source.into())));
                }
                Declaration::Swap { from, to, source } => swaps.push((from, to, source)),
            }
        }
        let mut days: Vec<Day> = (0..len)
            .map(|i| Day {
                working: !weekend(date_at(i)),
                ..Day::default()
            })
            .collect();
        // Days a weekend holiday cannot move to: holidays, and days already given for one.
        let mut taken = vec![false; len];
        let mut on_weekends = Vec::new();
        for (name, dates, source) in holidays.values() {
            for &date in dates {
                let Some(i) = index(date) else { continue };
                let source = source.clone().unwrap_or_else(|| code_on(date).0.into());
                days[i] = Day {
                    working: false,
                    holiday: Some(name.clone()),
                    source: Some(source),
                };
                taken[i] = true;
                if weekend(date) {
                    on_weekends.push((i, name.clone()));
                }
            }
        }
        // A holiday on a weekend: the next day that is neither a weekend, a holiday nor
        // already given for another is off.
        on_weekends.sort_by_key(|(i, _)| *i);
        for (i, name) in on_weekends {
            let next = (i + 1..len).find(|&j| !weekend(date_at(j)) && !taken[j]);
            if let Some(j) = next {
                taken[j] = true;
                days[j] = Day {
                    working: false,
                    holiday: Some(format!("{name} (nghỉ bù)").into()),
                    source: Some(code_on(date_at(i)).1.into()),
                };
            }
        }
        for (from, to, source) in swaps {
            let source: Arc<str> = source.into();
            if let Some(i) = index(from) {
                let day = &mut days[i];
                day.working = false;
                if day.holiday.is_none() {
                    let note = format!("Nghỉ bù, làm bù {}", to.format("%d/%m/%Y"));
                    day.holiday = Some(note.into());
                    day.source = Some(source.clone());
                }
            }
            if let Some(i) = index(to) {
                days[i] = Day {
                    working: true,
                    holiday: None,
                    source: Some(source),
                };
            }
        }
        let mut prefix = Vec::with_capacity(len + 1);
        prefix.push(0u32);
        for day in &days {
            prefix.push(prefix.last().copied().unwrap_or(0) + u32::from(day.working));
        }
        Self {
            first,
            first_day: days_since_epoch(first),
            days,
            prefix,
        }
    }

    /// The calendar with the announcements of the log: `calendar-{year}` events with their
    /// stream's year, in log order (other events are passed over).
    pub fn from_events(events: &[(i32, crate::DomainEvent)]) -> Self {
        use crate::DomainEvent as E;
        let declarations: Vec<Declaration> = events
            .iter()
            .filter_map(|(year, event)| match event {
                E::HolidayDeclared(e) => Some(Declaration::Holiday {
                    year: *year,
                    holiday: e.holiday.clone(),
                    name: e.name.clone(),
                    dates: e.dates.clone(),
                    source: e.source.clone(),
                }),
                E::WorkdaySwapped(e) => Some(Declaration::Swap {
                    from: e.from,
                    to: e.to,
                    source: e.source.clone(),
                }),
                _ => None,
            })
            .collect();
        Self::new(&declarations)
    }

    /// The index of a local day (days since 1970-01-01) in `days`, if the calendar covers it.
    fn index(&self, day: i32) -> Option<usize> {
        let i = i64::from(day) - i64::from(self.first_day);
        (0..self.days.len() as i64)
            .contains(&i)
            .then_some(i as usize)
    }

    /// The day `day` (days since 1970-01-01), if covered.
    pub fn day(&self, day: i32) -> Option<&Day> {
        self.index(day).map(|i| &self.days[i])
    }

    /// The working days `d` with `from < d ≤ to` (negative when `to` is before `from`: minus
    /// those with `to < d ≤ from`); `None` outside the calendar.
    pub fn working_days(&self, from: i32, to: i32) -> Option<i32> {
        let (from, to) = (self.index(from)?, self.index(to)?);
        Some(self.prefix[to + 1] as i32 - self.prefix[from + 1] as i32)
    }

    /// The `n`-th working day after `day` (`n` > 0), before it (`n` < 0), or `day` itself
    /// (`n` = 0); `None` outside the calendar.
    pub fn add_working_days(&self, day: i32, n: i64) -> Option<i32> {
        let i = self.index(day)?;
        let target = match n.cmp(&0) {
            std::cmp::Ordering::Equal => return Some(day),
            std::cmp::Ordering::Greater => i64::from(self.prefix[i + 1]) + n,
            // Working days before `day`: `prefix[i]`; the |n|-th of them counting back.
            std::cmp::Ordering::Less => i64::from(self.prefix[i]) + n + 1,
        };
        if target < 1 || target > i64::from(*self.prefix.last()?) {
            return None;
        }
        // The first k with prefix[k] ≥ target is one past the day that makes the count.
        let k = self
            .prefix
            .partition_point(|&count| i64::from(count) < target);
        Some(day + (k as i64 - 1 - i as i64) as i32)
    }

    /// Every date of the calendar with its day, in order.
    pub fn days(&self) -> impl Iterator<Item = (NaiveDate, &Day)> + '_ {
        let first = self.first;
        self.days
            .iter()
            .enumerate()
            .map(move |(i, day)| (first + chrono::Days::new(i as u64), day))
    }
}

/// A date as days since 1970-01-01 (Arrow's `Date32`, chiso's local days).
pub fn days_since_epoch(date: NaiveDate) -> i32 {
    (date - NaiveDate::from_ymd_opt(1970, 1, 1).expect("a date")).num_days() as i32
}

#[cfg(test)]
mod tests;
