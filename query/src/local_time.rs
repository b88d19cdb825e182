//! Reporting time: local dates and months in `Asia/Ho_Chi_Minh`, which has been UTC+07:00
//! without daylight saving since 1975, so a fixed offset is exact for every date chiso takes.

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate};

/// Seconds east of UTC.
pub const OFFSET_SECONDS: i64 = 7 * 3600;
/// The zone's name in Arrow timestamp types (a fixed offset, so no tz database is needed).
pub const ZONE: &str = "+07:00";
const MICROS_PER_DAY: i64 = 86_400_000_000;

/// Days either side of 1970 that chiso's calendar covers (about ±9 000 years); instants and
/// days beyond are held at its edge, so extreme SQL literals cannot overflow date arithmetic.
pub const DAY_LIMIT: i32 = 3_300_000;

/// The local date of an instant (microseconds since the epoch), as days since 1970-01-01.
pub fn local_day(micros: i64) -> i32 {
    let day = micros
        .saturating_add(OFFSET_SECONDS * 1_000_000)
        .div_euclid(MICROS_PER_DAY);
    day.clamp(-i64::from(DAY_LIMIT), i64::from(DAY_LIMIT)) as i32
}

/// The first instant (µs) of a local day.
pub fn day_start(day: i32) -> i64 {
    i64::from(day) * MICROS_PER_DAY - OFFSET_SECONDS * 1_000_000
}

/// A month as `year * 12 + (month - 1)`: ordered, and easy to step.
pub type MonthKey = i32;

/// The local month of a local day.
pub fn month_of_day(day: i32) -> MonthKey {
    let date = date_of(day);
    date.year() * 12 + date.month0() as i32
}

/// The local month of an instant.
pub fn local_month(micros: i64) -> MonthKey {
    month_of_day(local_day(micros))
}

/// `YYYY-MM`.
pub fn month_name(month: MonthKey) -> String {
    format!(
        "{:04}-{:02}",
        month.div_euclid(12),
        month.rem_euclid(12) + 1
    )
}

/// Parses `YYYY-MM`.
pub fn parse_month(text: &str) -> Option<MonthKey> {
    let (year, month) = text.split_once('-')?;
    let (year, month): (i32, i32) = (year.parse().ok()?, month.parse().ok()?);
    (year.to_string().len() == 4 && (1..=12).contains(&month) && text.len() == 7)
        .then_some(year * 12 + month - 1)
}

/// The first local day of a month.
pub fn month_first_day(month: MonthKey) -> i32 {
    let date = NaiveDate::from_ymd_opt(month.div_euclid(12), month.rem_euclid(12) as u32 + 1, 1)
        .expect("a month key names a real month");
    day_number(date)
}

/// Days since 1970-01-01 of a date.
pub fn day_number(date: NaiveDate) -> i32 {
    (date - NaiveDate::default()).num_days() as i32
}

/// The date of a day number (held within ±[`DAY_LIMIT`]).
pub fn date_of(day: i32) -> NaiveDate {
    let day = day.clamp(-DAY_LIMIT, DAY_LIMIT);
    NaiveDate::default() + chrono::Duration::days(day.into())
}

/// Microseconds since the epoch of a time with an offset.
pub fn micros(time: &DateTime<FixedOffset>) -> i64 {
    time.timestamp_micros()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> i64 {
        micros(&DateTime::parse_from_rfc3339(text).unwrap())
    }

    #[test]
    fn local_midnight_is_seventeen_utc() {
        let before = at("2019-12-31T23:30:00+07:00");
        let after = at("2019-12-31T17:00:00Z");
        assert_eq!(date_of(local_day(before)).to_string(), "2019-12-31");
        assert_eq!(date_of(local_day(after)).to_string(), "2020-01-01");
        assert_eq!(month_name(local_month(before)), "2019-12");
        assert_eq!(month_name(local_month(after)), "2020-01");
        assert_eq!(day_start(local_day(after)), after);
    }

    #[test]
    fn months_round_trip() {
        let month = parse_month("2019-03").unwrap();
        assert_eq!(month_name(month), "2019-03");
        assert_eq!(date_of(month_first_day(month)).to_string(), "2019-03-01");
        assert_eq!(parse_month("2019-13"), None);
        assert_eq!(parse_month("19-03"), None);
    }
}
