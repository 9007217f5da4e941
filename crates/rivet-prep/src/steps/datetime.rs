//! `datetime`: parts of a timestamp as features.

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, Timelike};
use polars::prelude::DataFrame;
use serde::{Deserialize, Serialize};

use super::table::{create, data_error, drop, text};
use super::{At, Fitted, Invalid, Transform};
use crate::error::PrepError;

/// Parts of a timestamp as features `COLUMN_PART` that replace the column, at the end. The
/// column holds text: ISO 8601 as pandas reads it, `YYYY-MM-DD[ HH:MM[:SS[.f]]]` with a space
/// or `T`, then optionally `Z` or an offset `+HH:MM`, `+HHMM` or `+HH` (a space before it
/// allowed; converted to UTC), or what `format` (chrono's `strftime` syntax) says. A missing timestamp gives
/// missing parts; an unparsable one is an error naming its row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Datetime {
    /// The timestamp column.
    pub column: String,
    /// Which parts, in this order.
    pub parts: Vec<DatetimePart>,
    /// An explicit format, for example `"%d/%m/%Y %H:%M"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
}

/// A part of a timestamp that [`Datetime`] extracts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DatetimePart {
    /// The year.
    Year,
    /// 1 to 12.
    Month,
    /// Day of the month, 1 to 31.
    Day,
    /// 0 to 23.
    Hour,
    /// 0 to 59.
    Minute,
    /// 0 to 59 (a leap second counts as 59).
    Second,
    /// Monday 0 to Sunday 6 (pandas' `dayofweek`).
    Weekday,
    /// 1 to 366.
    DayOfYear,
}

impl DatetimePart {
    /// The part's name as written in a spec and in feature names.
    pub fn name(self) -> &'static str {
        match self {
            DatetimePart::Year => "year",
            DatetimePart::Month => "month",
            DatetimePart::Day => "day",
            DatetimePart::Hour => "hour",
            DatetimePart::Minute => "minute",
            DatetimePart::Second => "second",
            DatetimePart::Weekday => "weekday",
            DatetimePart::DayOfYear => "day_of_year",
        }
    }

    fn of(self, t: &NaiveDateTime) -> f64 {
        f64::from(match self {
            DatetimePart::Year => t.year(),
            DatetimePart::Month => t.month() as i32,
            DatetimePart::Day => t.day() as i32,
            DatetimePart::Hour => t.hour() as i32,
            DatetimePart::Minute => t.minute() as i32,
            DatetimePart::Second => t.second().min(59) as i32,
            DatetimePart::Weekday => t.weekday().num_days_from_monday() as i32,
            DatetimePart::DayOfYear => t.ordinal() as i32,
        })
    }
}

impl Transform for Datetime {
    type State = ();

    fn check(&self) -> Result<(), Invalid> {
        if self.parts.is_empty() {
            return Err(Invalid("`parts` lists no part".into()));
        }
        Ok(())
    }

    fn fit(&self, _: &DataFrame, _: &At) -> Result<(), PrepError> {
        Ok(())
    }

    fn apply(&self, _: &(), df: &mut DataFrame, at: &At) -> Result<(), PrepError> {
        let column = &self.column;
        let values = self.timestamps(df, at)?;
        drop(df, column, at)?;
        for part in &self.parts {
            let feature = format!("{column}_{}", part.name());
            let values = values.iter().map(|t| t.map_or(f64::NAN, |t| part.of(&t))).collect();
            create(df, &feature, column, values, at)?;
        }
        Ok(())
    }

    fn save(&self, _: &()) -> Fitted {
        Fitted::Stateless
    }

    fn restore(&self, fitted: Fitted) -> Option<()> {
        fitted.stateless()
    }
}

impl Datetime {
    /// The column's timestamps (UTC for RFC 3339 ones with an offset); `None` where missing.
    fn timestamps(&self, df: &DataFrame, at: &At) -> Result<Vec<Option<NaiveDateTime>>, PrepError> {
        let (name, format) = (&self.column, self.format.as_deref());
        let parse = |t: &str| parse_timestamp(t.trim(), format);
        text(df, name, "text timestamps", at)?
            .iter()
            .enumerate()
            .map(|(row, value)| match value {
                None => Ok(None),
                Some(t) if t.trim().is_empty() => Ok(None),
                Some(t) => parse(t).map(Some).ok_or_else(|| {
                    data_error(format!(
                        "{at}: column \"{name}\", {}: \"{t}\" is not a timestamp{}",
                        at.row(row),
                        format.map(|f| format!(" in format \"{f}\"")).unwrap_or_default()
                    ))
                }),
            })
            .collect()
    }
}

/// A timestamp in UTC: by `format` when given, else ISO 8601 as pandas reads it (a date, with
/// a time after a space or `T`, seconds and fraction optional, then optionally `Z` or an
/// offset `+HH:MM`, `+HHMM` or `+HH`, with or without a space before it).
fn parse_timestamp(t: &str, format: Option<&str>) -> Option<NaiveDateTime> {
    if let Some(format) = format {
        return NaiveDateTime::parse_from_str(t, format)
            .ok()
            .or_else(|| NaiveDate::parse_from_str(t, format).ok().and_then(|d| d.and_hms_opt(0, 0, 0)));
    }
    if let Some(dt) = iso_fast(t.as_bytes()) {
        return Some(dt);
    }
    if let Ok(dt) = DateTime::parse_from_rfc3339(t) {
        return Some(dt.naive_utc());
    }
    if let Some(local) = naive(t) {
        return Some(local);
    }
    let (local, offset) = split_offset(t)?;
    naive(local)?.checked_sub_signed(chrono::TimeDelta::seconds(offset))
}

/// A timestamp without an offset.
fn naive(t: &str) -> Option<NaiveDateTime> {
    ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(t, f).ok())
        .or_else(|| NaiveDate::parse_from_str(t, "%Y-%m-%d").ok().and_then(|d| d.and_hms_opt(0, 0, 0)))
}

/// A trailing UTC offset (`Z`, `+HH:MM`, `+HHMM`, `+HH`, or `-`, after the date, a space
/// before it allowed): the local part and the offset in seconds east of UTC.
fn split_offset(t: &str) -> Option<(&str, i64)> {
    if let Some(local) = t.strip_suffix('Z') {
        return Some((local.trim_end(), 0));
    }
    let sign_at = t.rfind(['+', '-']).filter(|&i| i > 10)?;
    let sign = if t.as_bytes()[sign_at] == b'-' { -1 } else { 1 };
    let digits: String = t[sign_at + 1..].chars().filter(|c| *c != ':').collect();
    if !digits.bytes().all(|b| b.is_ascii_digit()) || !(digits.len() == 2 || digits.len() == 4) {
        return None;
    }
    if t[sign_at + 1..].contains(':') && t.len() - sign_at != 6 {
        return None;
    }
    let hours: i64 = digits[..2].parse().ok()?;
    let minutes: i64 = if digits.len() == 4 { digits[2..].parse().ok()? } else { 0 };
    if hours > 23 || minutes > 59 {
        return None;
    }
    Some((t[..sign_at].trim_end(), sign * (hours * 3600 + minutes * 60)))
}

/// `YYYY-MM-DD HH:MM:SS` or with `T` (no fraction, no offset), the common case, without
/// chrono's format machinery; anything else returns `None` and goes the general way.
fn iso_fast(b: &[u8]) -> Option<NaiveDateTime> {
    if b.len() != 19
        || b[4] != b'-'
        || b[7] != b'-'
        || !(b[10] == b' ' || b[10] == b'T')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<u32> {
        b[range].iter().try_fold(0u32, |n, &c| c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0')))
    };
    let date = NaiveDate::from_ymd_opt(num(0..4)? as i32, num(5..7)?, num(8..10)?)?;
    date.and_hms_opt(num(11..13)?, num(14..16)?, num(17..19)?)
}
