//! Durations on the command line, as `timeout(1)` takes them: a number (fractions allowed)
//! with an optional unit, `ms`, `s` (the default), `m`, `h` or `d`.

use std::time::Duration;

pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let seconds_per_unit = match unit {
        "ms" => 0.001,
        "" | "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86400.0,
        _ => {
            return Err(format!(
                "unknown unit `{unit}` in `{text}` (ms, s, m, h, d)"
            ));
        }
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("expected a duration like 10s, 1.5m or 500ms, got `{text}`"))?;
    Duration::try_from_secs_f64(value * seconds_per_unit)
        .map_err(|_| format!("`{text}` is not a duration rexec can wait"))
}

/// A short human form for tables: `850ms`, `42s`, `3m07s`, `2h05m`, `3d04h`.
pub fn format_short(duration: Duration) -> String {
    let secs = duration.as_secs();
    match secs {
        0 => format!("{}ms", duration.as_millis()),
        1..60 => format!("{secs}s"),
        60..3600 => format!("{}m{:02}s", secs / 60, secs % 60),
        3600..86400 => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d{:02}h", secs / 86400, secs % 86400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_fractions() {
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5m"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn short_forms() {
        assert_eq!(format_short(Duration::from_millis(850)), "850ms");
        assert_eq!(format_short(Duration::from_secs(42)), "42s");
        assert_eq!(format_short(Duration::from_secs(187)), "3m07s");
        assert_eq!(format_short(Duration::from_secs(7500)), "2h05m");
        assert_eq!(
            format_short(Duration::from_secs(3 * 86400 + 4 * 3600)),
            "3d04h"
        );
    }
}
