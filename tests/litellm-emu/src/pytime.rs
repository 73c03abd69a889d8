//! Time as LiteLLM computes and prints it: key expiry (`duration_in_seconds`), budget resets
//! (`get_next_standardized_reset_time`), and the three datetime spellings its responses use.
//!
//! Both parsers are ports of `litellm/litellm_core_utils/duration_parser.py` (1.80.17), quirks
//! included: they match a *prefix* of the string, `"1w"` is a week for expiry but "next midnight"
//! for a budget reset, unknown budget units and garbage fall back to the next midnight, and month
//! arithmetic fails with Python's own `month must be in 1..12`.

use time::{Date, Duration, Month, OffsetDateTime, PrimitiveDateTime, Time, Weekday};

/// The current UTC time at microsecond precision (Python's `datetime.now(timezone.utc)`).
pub(crate) fn now() -> OffsetDateTime {
    let t = OffsetDateTime::now_utc();
    let micros = t.microsecond();
    t.replace_nanosecond(micros * 1_000).unwrap_or(t)
}

/// Truncate to milliseconds, as a value read back from Postgres through Prisma is.
pub(crate) fn db_time(t: OffsetDateTime) -> OffsetDateTime {
    let millis = t.millisecond();
    t.replace_nanosecond(u32::from(millis) * 1_000_000)
        .unwrap_or(t)
}

fn date_time_parts(t: OffsetDateTime, sep: char) -> String {
    let base = format!(
        "{:04}-{:02}-{:02}{sep}{:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    // Python's isoformat() and str() omit the fraction when it is zero.
    match t.microsecond() {
        0 => base,
        us => format!("{base}.{us:06}"),
    }
}

/// Pydantic's JSON spelling of a UTC datetime: `2026-11-25T10:31:05.878000Z`.
pub(crate) fn iso_z(t: OffsetDateTime) -> String {
    format!("{}Z", date_time_parts(t, 'T'))
}

/// Python's `isoformat()` of a UTC datetime: `2026-11-25T10:31:05.878000+00:00`.
pub(crate) fn iso_offset(t: OffsetDateTime) -> String {
    format!("{}+00:00", date_time_parts(t, 'T'))
}

/// Python's `str()` of a UTC datetime: `2026-11-25 10:31:05.878000+00:00`.
pub(crate) fn py_str(t: OffsetDateTime) -> String {
    format!("{}+00:00", date_time_parts(t, ' '))
}

/// `2026-11-25 10:33:28 UTC`, as the rate limiter prints its reset time.
pub(crate) fn rate_limit_reset(t: OffsetDateTime) -> String {
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// Python's error for a datetime or timedelta that left the representable range.
const OUT_OF_RANGE: &str = "date value out of range";
/// Python's error for `datetime(month=13)`.
const BAD_MONTH: &str = "month must be in 1..12";

/// Leading ASCII digits of `s` and the rest, or `None` when `s` does not start with a digit.
fn split_number(s: &str) -> Option<(&str, &str)> {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    (end > 0).then(|| s.split_at(end))
}

fn parse_count(digits: &str) -> Result<i64, String> {
    digits.parse::<i64>().map_err(|_| OUT_OF_RANGE.to_owned())
}

fn last_day_of_month(year: i32, month: u8) -> Result<u8, String> {
    if month == 12 {
        return Ok(31);
    }
    let next = Month::try_from(month + 1).map_err(|_| BAD_MONTH.to_owned())?;
    let first = Date::from_calendar_date(year, next, 1).map_err(|_| OUT_OF_RANGE.to_owned())?;
    first
        .previous_day()
        .map(|d| d.day())
        .ok_or_else(|| OUT_OF_RANGE.to_owned())
}

/// Seconds until a key made now with `duration` expires (`duration_in_seconds`).
///
/// Errors carry LiteLLM's message, e.g. `Invalid duration format`.
pub(crate) fn duration_in_seconds(duration: &str, now: OffsetDateTime) -> Result<i64, String> {
    let (digits, rest) = split_number(duration).ok_or("Invalid duration format")?;
    let value = parse_count(digits)?;
    let unit = if rest.starts_with("mo") {
        "mo"
    } else {
        match rest.chars().next() {
            Some(c @ ('s' | 'm' | 'h' | 'd' | 'w')) => &rest[..c.len_utf8()],
            _ => "",
        }
    };
    let scaled = |factor: i64| value.checked_mul(factor).ok_or(OUT_OF_RANGE.to_owned());
    match unit {
        "s" => Ok(value),
        "m" => scaled(60),
        "h" => scaled(3_600),
        "d" => scaled(86_400),
        "w" => scaled(604_800),
        "mo" => {
            // Same day and time, `value` months on (December always goes to January: the
            // original ignores `value` there); the day is clamped to the target month's end.
            let (year, month) = if now.month() == Month::December {
                (now.year() + 1, 1_i64)
            } else {
                (now.year(), i64::from(u8::from(now.month())) + value)
            };
            let month = u8::try_from(month)
                .ok()
                .filter(|m| (1..=12).contains(m))
                .ok_or(BAD_MONTH)?;
            let day = now.day().min(last_day_of_month(year, month)?);
            let month = Month::try_from(month).map_err(|_| BAD_MONTH.to_owned())?;
            let date =
                Date::from_calendar_date(year, month, day).map_err(|_| OUT_OF_RANGE.to_owned())?;
            let target = PrimitiveDateTime::new(date, now.time()).assume_utc();
            Ok((target - now).whole_seconds())
        }
        _ => Err(format!(
            "Unsupported duration unit, passed duration: {duration}"
        )),
    }
}

/// When a key made now with `duration` expires, or LiteLLM's error message.
pub(crate) fn expiry(duration: &str, now: OffsetDateTime) -> Result<OffsetDateTime, String> {
    let secs = duration_in_seconds(duration, now)?;
    now.checked_add(Duration::seconds(secs))
        .ok_or_else(|| OUT_OF_RANGE.to_owned())
}

fn at(date: Date, hour: u8, minute: u8, second: u8) -> Result<OffsetDateTime, String> {
    let t = Time::from_hms(hour, minute, second).map_err(|_| OUT_OF_RANGE.to_owned())?;
    Ok(PrimitiveDateTime::new(date, t).assume_utc())
}

fn next_day(date: Date) -> Result<Date, String> {
    date.next_day().ok_or_else(|| OUT_OF_RANGE.to_owned())
}

fn first_of_next_month(now: OffsetDateTime) -> Result<OffsetDateTime, String> {
    let (year, month) = if now.month() == Month::December {
        (now.year() + 1, Month::January)
    } else {
        (now.year(), now.month().next())
    };
    let date = Date::from_calendar_date(year, month, 1).map_err(|_| OUT_OF_RANGE.to_owned())?;
    at(date, 0, 0, 0)
}

/// Next multiple of `value` strictly after `current` (LiteLLM's alignment rule).
fn next_aligned(current: i64, value: i64) -> i64 {
    if current % value != 0 {
        current + value - (current % value)
    } else {
        current + value
    }
}

/// When a budget with `budget_duration` set now resets (`get_next_standardized_reset_time`, UTC).
///
/// `"30d"` and `"1mo"` → the first instant of next month; `"1d"` and garbage → next midnight;
/// `"7d"` → next Monday; `"2mo"` → error `Monthly resets currently only support 1 month intervals`.
pub(crate) fn budget_reset_at(
    budget_duration: &str,
    now: OffsetDateTime,
) -> Result<OffsetDateTime, String> {
    let today = now.date();
    let next_midnight = || at(next_day(today)?, 0, 0, 0);
    // `re.match(r"(\d+)([a-z]+)", duration)`
    let parsed = split_number(budget_duration).and_then(|(digits, rest)| {
        let end = rest
            .find(|c: char| !c.is_ascii_lowercase())
            .unwrap_or(rest.len());
        (end > 0).then(|| (digits, &rest[..end]))
    });
    let Some((digits, unit)) = parsed else {
        return next_midnight();
    };
    let value = parse_count(digits)?;
    if matches!(unit, "d" | "h" | "m" | "s") && value == 0 {
        return Ok(now);
    }
    let (h, m, s) = (
        i64::from(now.hour()),
        i64::from(now.minute()),
        i64::from(now.second()),
    );
    // Seconds past today's midnight → a time today or (at most one day) tomorrow, like the original.
    let roll = |hour: i64, minute: i64, second: i64| -> Result<OffsetDateTime, String> {
        let (date, hour) = if hour >= 24 {
            (next_day(today)?, hour % 24)
        } else {
            (today, hour)
        };
        let to_u8 = |v: i64| u8::try_from(v).map_err(|_| OUT_OF_RANGE.to_owned());
        at(date, to_u8(hour)?, to_u8(minute)?, to_u8(second)?)
    };
    match unit {
        "d" => match value {
            1 => next_midnight(),
            7 => {
                let days = match now.weekday() {
                    Weekday::Monday => 7,
                    other => 7 - i64::from(other.number_days_from_monday()),
                };
                let date = today
                    .checked_add(Duration::days(days))
                    .ok_or(OUT_OF_RANGE)?;
                at(date, 0, 0, 0)
            }
            30 => first_of_next_month(now),
            n => {
                let date = today.checked_add(Duration::days(n)).ok_or(OUT_OF_RANGE)?;
                at(date, 0, 0, 0)
            }
        },
        "h" => roll(next_aligned(h, value), 0, 0),
        "m" => {
            let minute = next_aligned(m, value);
            roll(h + minute / 60, minute % 60, 0)
        }
        "s" => {
            let second = next_aligned(s, value);
            let minute = m + second / 60;
            roll(h + minute / 60, minute % 60, second % 60)
        }
        "mo" if value == 1 => first_of_next_month(now),
        "mo" => Err("Monthly resets currently only support 1 month intervals".to_owned()),
        _ => next_midnight(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn expiry_durations_follow_litellm() {
        let now = datetime!(2026-11-25 10:31:44.5 UTC);
        assert_eq!(duration_in_seconds("30s", now), Ok(30));
        assert_eq!(duration_in_seconds("15m", now), Ok(900));
        assert_eq!(duration_in_seconds("1h", now), Ok(3_600));
        assert_eq!(duration_in_seconds("1d", now), Ok(86_400));
        assert_eq!(duration_in_seconds("1w", now), Ok(604_800));
        assert_eq!(duration_in_seconds("1mo", now), Ok(30 * 86_400));
        assert_eq!(duration_in_seconds("1dx", now), Ok(86_400));
        assert_eq!(
            duration_in_seconds("bogus", now),
            Err("Invalid duration format".into())
        );
        assert_eq!(
            duration_in_seconds("30", now),
            Err("Unsupported duration unit, passed duration: 30".into())
        );
        assert_eq!(duration_in_seconds("2mo", now), Err(BAD_MONTH.into()));
        let jan31 = datetime!(2027-01-31 08:00 UTC);
        assert_eq!(duration_in_seconds("1mo", jan31), Ok(28 * 86_400));
    }

    #[test]
    fn budget_resets_follow_litellm() {
        // A Wednesday, as observed against the real proxy.
        let now = datetime!(2026-11-25 10:31:44.427 UTC);
        let r = |s: &str| budget_reset_at(s, now).map(iso_offset);
        assert_eq!(r("30d"), Ok("2026-12-01T00:00:00+00:00".into()));
        assert_eq!(r("1mo"), Ok("2026-12-01T00:00:00+00:00".into()));
        assert_eq!(r("1d"), Ok("2026-11-26T00:00:00+00:00".into()));
        assert_eq!(r("garbage"), Ok("2026-11-26T00:00:00+00:00".into()));
        assert_eq!(r("1w"), Ok("2026-11-26T00:00:00+00:00".into()));
        assert_eq!(r("7d"), Ok("2026-11-30T00:00:00+00:00".into()));
        assert_eq!(r("1h"), Ok("2026-11-25T11:00:00+00:00".into()));
        assert_eq!(r("15m"), Ok("2026-11-25T10:45:00+00:00".into()));
        assert_eq!(r("30s"), Ok("2026-11-25T10:32:00+00:00".into()));
        assert_eq!(r("0d"), Ok("2026-11-25T10:31:44.427000+00:00".into()));
        assert!(r("2mo").is_err());
        let dec = datetime!(2026-12-31 23:59 UTC);
        assert_eq!(
            budget_reset_at("1mo", dec).map(iso_offset),
            Ok("2027-01-01T00:00:00+00:00".into())
        );
        assert_eq!(
            budget_reset_at("2h", dec).map(iso_offset),
            Ok("2027-01-01T00:00:00+00:00".into())
        );
    }

    #[test]
    fn datetime_spellings() {
        let t = datetime!(2026-11-25 10:31:05.878 UTC);
        assert_eq!(iso_z(t), "2026-11-25T10:31:05.878000Z");
        assert_eq!(iso_offset(t), "2026-11-25T10:31:05.878000+00:00");
        assert_eq!(py_str(t), "2026-11-25 10:31:05.878000+00:00");
        assert_eq!(
            iso_offset(datetime!(2026-12-01 0:00 UTC)),
            "2026-12-01T00:00:00+00:00"
        );
    }
}
