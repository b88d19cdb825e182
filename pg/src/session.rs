//! A connection's settings: what `SET`, `RESET` and `SHOW` see. They live in the connection's
//! own metadata (lower-case names, where `pgwire` and `arrow-pg` read the formatting ones), so
//! no client changes another's session or the engine shared by all. chiso takes the settings
//! clients send to configure themselves; each is checked, and one that would change what
//! chiso does (a DataFusion option, a writable transaction) is refused with a SQLSTATE.

use crate::sqlstate::error;
use chiso_query::postgres::server_setting;
#[cfg(test)]
use chiso_query::postgres::TIME_ZONE;
use chiso_query::SqlLimits;
use pgwire::error::PgWireResult;
use std::collections::HashMap;
use std::time::Duration;

/// A setting a client may change.
struct Parameter {
    /// Its name, lower case.
    name: &'static str,
    /// The name a change is reported under (`ParameterStatus`), if PostgreSQL reports it.
    reported: Option<&'static str>,
    /// Checks a value; the value to keep.
    check: fn(&str, &SqlLimits) -> PgWireResult<String>,
}

const PARAMETERS: &[Parameter] = &[
    Parameter {
        name: "application_name",
        reported: Some("application_name"),
        check: any_name,
    },
    Parameter {
        name: "client_encoding",
        reported: Some("client_encoding"),
        check: utf8,
    },
    Parameter {
        name: "datestyle",
        reported: Some("DateStyle"),
        check: iso_dates,
    },
    Parameter {
        name: "timezone",
        reported: Some("TimeZone"),
        check: time_zone,
    },
    Parameter {
        name: "intervalstyle",
        reported: Some("IntervalStyle"),
        check: postgres_intervals,
    },
    Parameter {
        name: "standard_conforming_strings",
        reported: Some("standard_conforming_strings"),
        check: on_only,
    },
    Parameter {
        name: "extra_float_digits",
        reported: None,
        check: float_digits,
    },
    Parameter {
        name: "search_path",
        reported: None,
        check: any,
    },
    Parameter {
        name: "statement_timeout",
        reported: None,
        check: statement_timeout_ms,
    },
    Parameter {
        name: "bytea_output",
        reported: None,
        check: hex_only,
    },
    Parameter {
        name: "client_min_messages",
        reported: None,
        check: message_level,
    },
    Parameter {
        name: "default_transaction_read_only",
        reported: None,
        check: read_only,
    },
    Parameter {
        name: "transaction_read_only",
        reported: None,
        check: read_only,
    },
    Parameter {
        name: "default_transaction_isolation",
        reported: None,
        check: isolation,
    },
    Parameter {
        name: "transaction_isolation",
        reported: None,
        check: isolation,
    },
    Parameter {
        name: "idle_in_transaction_session_timeout",
        reported: None,
        check: duration_ms,
    },
    Parameter {
        name: "lock_timeout",
        reported: None,
        check: duration_ms,
    },
    Parameter {
        name: "jit",
        reported: None,
        check: boolean,
    },
];

/// The value of a parameter no client has set: the server's, but for the time limit.
fn default(name: &str, limits: &SqlLimits) -> Option<String> {
    match name {
        "statement_timeout" => Some(limits.default_timeout.as_millis().to_string()),
        "bytea_output" => Some("hex".into()),
        "client_min_messages" => Some("notice".into()),
        "idle_in_transaction_session_timeout" | "lock_timeout" => Some("0".into()),
        "jit" => Some("off".into()),
        _ => server_setting(name),
    }
}

/// A parameter's canonical name: lower case, `SHOW TRANSACTION ISOLATION LEVEL` as the
/// parameter it shows.
pub(crate) fn canonical(name: &str) -> String {
    match name.to_ascii_lowercase().as_str() {
        "transaction isolation level" => "transaction_isolation".into(),
        "time zone" => "timezone".into(),
        other => other.to_owned(),
    }
}

/// Sets `name` (canonical) to `value`, or back to its default when `value` is `None`; the
/// `ParameterStatus` to send when PostgreSQL reports the change.
pub(crate) fn set(
    metadata: &mut HashMap<String, String>,
    name: &str,
    value: Option<&str>,
    limits: &SqlLimits,
) -> PgWireResult<Option<(&'static str, String)>> {
    let Some(parameter) = PARAMETERS.iter().find(|p| p.name == name) else {
        return Err(refusal(name));
    };
    let value = match value {
        Some(value) => (parameter.check)(value, limits)?,
        None => default(name, limits).unwrap_or_default(),
    };
    metadata.insert(name.to_owned(), value.clone());
    Ok(parameter.reported.map(|reported| (reported, value)))
}

/// Every setting back to its default (`RESET ALL`, `DISCARD ALL`).
pub(crate) fn reset_all(metadata: &mut HashMap<String, String>) {
    for parameter in PARAMETERS {
        metadata.remove(parameter.name);
    }
}

fn refusal(name: &str) -> pgwire::error::PgWireError {
    if name.starts_with("datafusion.") {
        error(
            "42501",
            format!(
                "{name} is the server's: chiso's engine settings cannot be changed by a client"
            ),
        )
    } else if default(name, &SqlLimits::default()).is_some() {
        error("55P02", format!("parameter \"{name}\" cannot be changed"))
    } else {
        error(
            "42704",
            format!("unrecognized configuration parameter \"{name}\""),
        )
    }
}

/// The value of `name` (canonical) in this session.
pub(crate) fn show(
    metadata: &HashMap<String, String>,
    name: &str,
    limits: &SqlLimits,
) -> PgWireResult<String> {
    let set = metadata
        .get(name)
        .filter(|_| PARAMETERS.iter().any(|p| p.name == name))
        .cloned();
    match set.or_else(|| default(name, limits)) {
        Some(value) if name == "statement_timeout" => Ok(format!("{value}ms")),
        Some(value) => Ok(value),
        None if name.starts_with("datafusion.") => Err(error(
            "42501",
            format!("{name} is the server's: chiso does not show its engine settings here"),
        )),
        None => Err(error(
            "42704",
            format!("unrecognized configuration parameter \"{name}\""),
        )),
    }
}

/// Takes the settings a client sent at startup (`DateStyle`, `TimeZone`,
/// `extra_float_digits`, …) as if it had `SET` them; a value chiso does not take is left at
/// its default, as the `ParameterStatus` messages then tell the client.
pub(crate) fn adopt_startup(metadata: &mut HashMap<String, String>, limits: &SqlLimits) {
    let given: Vec<(String, String)> = metadata
        .iter()
        .map(|(name, value)| (canonical(name), value.clone()))
        .filter(|(name, _)| PARAMETERS.iter().any(|p| p.name == name))
        .collect();
    for (name, value) in given {
        if set(metadata, &name, Some(&value), limits).is_err() {
            tracing::debug!(name, value, "a startup setting chiso does not take");
            metadata.remove(&name);
        }
    }
}

/// The `ParameterStatus` values sent after a login.
pub(crate) fn reported(
    metadata: &HashMap<String, String>,
    limits: &SqlLimits,
) -> HashMap<String, String> {
    let mut reported: HashMap<String, String> = PARAMETERS
        .iter()
        .filter_map(|p| {
            let value = metadata
                .get(p.name)
                .cloned()
                .or_else(|| default(p.name, limits))?;
            Some((p.reported?.to_owned(), value))
        })
        .collect();
    for name in [
        "server_version",
        "server_encoding",
        "integer_datetimes",
        "is_superuser",
    ] {
        reported.insert(name.to_owned(), default(name, limits).unwrap_or_default());
    }
    reported.insert("default_transaction_read_only".into(), "on".into());
    reported.insert("in_hot_standby".into(), "off".into());
    if let Some(user) = metadata.get(pgwire::api::METADATA_USER) {
        reported.insert("session_authorization".into(), user.clone());
    }
    reported
}

/// The time limit of this session's next statement (`statement_timeout`).
pub(crate) fn statement_timeout(
    metadata: &HashMap<String, String>,
    limits: &SqlLimits,
) -> Duration {
    metadata
        .get("statement_timeout")
        .and_then(|ms| ms.parse().ok())
        .map_or(limits.default_timeout, Duration::from_millis)
}

fn any(value: &str, _: &SqlLimits) -> PgWireResult<String> {
    Ok(value.to_owned())
}

/// PostgreSQL keeps the first 63 bytes of a name.
fn any_name(value: &str, _: &SqlLimits) -> PgWireResult<String> {
    let mut end = value.len().min(63);
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    Ok(value[..end].to_owned())
}

fn utf8(value: &str, _: &SqlLimits) -> PgWireResult<String> {
    match value.to_ascii_lowercase().replace('-', "").as_str() {
        "utf8" | "unicode" => Ok("UTF8".into()),
        _ => Err(error(
            "0A000",
            format!("chiso speaks UTF8 only, not {value}"),
        )),
    }
}

fn iso_dates(value: &str, _: &SqlLimits) -> PgWireResult<String> {
    let parts: Vec<String> = value
        .split(',')
        .map(|p| p.trim().to_ascii_uppercase())
        .collect();
    if !parts.iter().any(|p| p == "ISO") {
        return Err(error(
            "0A000",
            format!("chiso writes dates in the ISO style only, not {value}"),
        ));
    }
    let order = parts
        .iter()
        .find(|p| matches!(p.as_str(), "MDY" | "DMY" | "YMD"));
    Ok(format!("ISO, {}", order.map_or("MDY", String::as_str)))
}

fn time_zone(value: &str, _: &SqlLimits) -> PgWireResult<String> {
    use datafusion::arrow::array::timezone::Tz;
    // PostgreSQL reads zone names in any case; the names chiso knows are case-sensitive.
    if value.eq_ignore_ascii_case("utc") || value.eq_ignore_ascii_case("gmt") {
        return Ok(value.to_ascii_uppercase());
    }
    match value.parse::<Tz>() {
        Ok(_) => Ok(value.to_owned()),
        Err(_) => Err(error(
            "22023",
            format!("invalid value for parameter \"TimeZone\": \"{value}\""),
        )),
    }
}

fn postgres_intervals(value: &str, _: &SqlLimits) -> PgWireResult<String> {
    match value.eq_ignore_ascii_case("postgres") {
        true => Ok("postgres".into()),
        false => Err(error(
            "0A000",
            "chiso writes intervals in the postgres style only",
        )),
    }
}

fn hex_only(value: &str, _: &SqlLimits) -> PgWireResult<String> {
    match value.eq_ignore_ascii_case("hex") {
        true => Ok("hex".into()),
        false => Err(error("0A000", "chiso writes bytea as hex only")),
    }
}

fn on_only(value: &str, _: &SqlLimits) -> PgWireResult<String> {
    match parse_bool(value) {
        Some(true) => Ok("on".into()),
        _ => Err(error("0A000", "chiso keeps standard_conforming_strings on")),
    }
}

fn boolean(value: &str, _: &SqlLimits) -> PgWireResult<String> {
    match parse_bool(value) {
        Some(true) => Ok("on".into()),
        Some(false) => Ok("off".into()),
        None => Err(error(
            "22023",
            format!("expected a boolean, not \"{value}\""),
        )),
    }
}

/// A transaction's access: chiso's are all read-only.
fn read_only(value: &str, limits: &SqlLimits) -> PgWireResult<String> {
    match boolean(value, limits)?.as_str() {
        "on" => Ok("on".into()),
        _ => Err(error(
            "25006",
            "chiso's SQL is read-only: transactions cannot write",
        )),
    }
}

fn parse_bool(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" | "1" | "t" => Some(true),
        "off" | "false" | "no" | "0" | "f" => Some(false),
        _ => None,
    }
}

fn float_digits(value: &str, _: &SqlLimits) -> PgWireResult<String> {
    match value.trim().parse::<i8>() {
        Ok(digits) if (-15..=3).contains(&digits) => Ok(digits.to_string()),
        _ => Err(error(
            "22023",
            format!("extra_float_digits is from -15 to 3, not {value}"),
        )),
    }
}

fn message_level(value: &str, _: &SqlLimits) -> PgWireResult<String> {
    let level = value.to_ascii_lowercase();
    let known = [
        "debug5", "debug4", "debug3", "debug2", "debug1", "debug", "log", "notice", "warning",
        "error", "info",
    ];
    match known.contains(&level.as_str()) {
        true => Ok(level),
        false => Err(error(
            "22023",
            format!("invalid value for client_min_messages: \"{value}\""),
        )),
    }
}

fn isolation(value: &str, _: &SqlLimits) -> PgWireResult<String> {
    let level = value.to_ascii_lowercase();
    match [
        "read uncommitted",
        "read committed",
        "repeatable read",
        "serializable",
    ]
    .contains(&level.as_str())
    {
        true => Ok(level),
        false => Err(error(
            "22023",
            format!("invalid transaction isolation level \"{value}\""),
        )),
    }
}

fn duration_ms(value: &str, _: &SqlLimits) -> PgWireResult<String> {
    parse_duration(value)
        .map(|duration| duration.as_millis().to_string())
        .ok_or_else(|| {
            error(
                "22023",
                format!("expected a time like 5000, '5s' or '2min', not \"{value}\""),
            )
        })
}

/// `statement_timeout`: at most the server's longest time limit; 0 (no limit, in PostgreSQL)
/// is that longest limit here.
fn statement_timeout_ms(value: &str, limits: &SqlLimits) -> PgWireResult<String> {
    let Some(timeout) = parse_duration(value) else {
        return duration_ms(value, limits);
    };
    if timeout > limits.max_timeout {
        return Err(error(
            "22023",
            format!(
                "statement_timeout is at most {} ms on this server",
                limits.max_timeout.as_millis()
            ),
        ));
    }
    let timeout = if timeout.is_zero() {
        limits.max_timeout
    } else {
        timeout
    };
    // Whole milliseconds, rounded up: half a millisecond is a limit, not none.
    Ok(timeout.as_micros().div_ceil(1000).to_string())
}

/// A PostgreSQL time setting: a number of milliseconds, or a number with a unit (`us`, `ms`,
/// `s`, `min`, `h`, `d`).
fn parse_duration(value: &str) -> Option<Duration> {
    let value = value.trim();
    let split = value
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let number: f64 = number.parse().ok()?;
    let millis = match unit.trim() {
        "" | "ms" => number,
        "us" => number / 1000.0,
        "s" => number * 1000.0,
        "min" => number * 60_000.0,
        "h" => number * 3_600_000.0,
        "d" => number * 86_400_000.0,
        _ => return None,
    };
    (millis.is_finite() && millis >= 0.0).then(|| Duration::from_micros((millis * 1000.0) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_checked_and_kept_per_session() {
        let limits = SqlLimits::default();
        let mut session = HashMap::new();
        let reported = set(&mut session, "application_name", Some("psql"), &limits).unwrap();
        assert_eq!(reported, Some(("application_name", "psql".into())));
        assert_eq!(
            set(&mut session, "datestyle", Some("iso, dmy"), &limits)
                .unwrap()
                .unwrap()
                .1,
            "ISO, DMY"
        );
        assert!(set(&mut session, "datestyle", Some("German"), &limits).is_err());
        assert!(set(&mut session, "timezone", Some("Mars/Olympus"), &limits).is_err());
        set(&mut session, "timezone", Some("UTC"), &limits).unwrap();
        set(&mut session, "statement_timeout", Some("5s"), &limits).unwrap();
        assert_eq!(statement_timeout(&session, &limits), Duration::from_secs(5));
        assert!(set(&mut session, "statement_timeout", Some("1h"), &limits).is_err());
        set(&mut session, "statement_timeout", Some("0"), &limits).unwrap();
        assert_eq!(statement_timeout(&session, &limits), limits.max_timeout);
        let refused = |name: &str| match set(&mut HashMap::new(), name, Some("1"), &limits) {
            Err(pgwire::error::PgWireError::UserError(info)) => info.code.clone(),
            other => panic!("{name}: {other:?}"),
        };
        assert_eq!(refused("datafusion.runtime.memory_limit"), "42501");
        assert_eq!(refused("work_mem_nonsense"), "42704");
        assert_eq!(refused("server_version"), "55P02");
        assert_eq!(show(&session, "timezone", &limits).unwrap(), "UTC");
        assert_eq!(
            show(&HashMap::new(), "server_version", &limits).unwrap(),
            "16.6"
        );
        reset_all(&mut session);
        assert_eq!(show(&session, "timezone", &limits).unwrap(), TIME_ZONE);
    }
}
