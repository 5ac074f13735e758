//! Docker's human-readable sizes and durations (the go-units package's rules and outputs).

/// Go's `%.{prec}g`: `prec` significant digits, trailing zeros removed, exponent form when the
/// exponent is below -4 or at least `prec`.
pub fn go_g(value: f64, prec: usize) -> String {
    if value == 0.0 {
        return "0".to_string();
    }
    let prec = prec.max(1);
    let sci = format!("{:.*e}", prec - 1, value);
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if exp < -4 || exp >= prec as i32 {
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{}e{sign}{:02}", trim_zeros(mantissa), exp.abs());
    }
    let decimals = (prec as i32 - 1 - exp).max(0) as usize;
    trim_zeros(&format!("{value:.decimals$}")).to_string()
}

fn trim_zeros(text: &str) -> &str {
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.')
    } else {
        text
    }
}

const DECIMAL: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
const BINARY: [&str; 9] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"];

fn custom_size(size: f64, prec: usize, base: f64, units: &[&str]) -> String {
    let mut size = size;
    let mut i = 0;
    while size >= base && i < units.len() - 1 {
        size /= base;
        i += 1;
    }
    format!("{}{}", go_g(size, prec), units[i])
}

/// `units.HumanSizeWithPrecision`: decimal units (`4.26MB` at precision 3).
pub fn human_size_with_precision(size: i64, prec: usize) -> String {
    custom_size(size as f64, prec, 1000.0, &DECIMAL)
}

/// `units.HumanSize`: decimal units, 4 significant digits (`4.261MB`).
pub fn human_size(size: i64) -> String {
    human_size_with_precision(size, 4)
}

/// `units.BytesSize`: binary units, 4 significant digits (`1.944GiB`).
pub fn bytes_size(size: i64) -> String {
    custom_size(size as f64, 4, 1024.0, &BINARY)
}

/// `units.HumanDuration`: `Less than a second`, `About a minute`, `2 hours`, `3 weeks`...
pub fn human_duration(seconds: i64) -> String {
    let minutes = seconds / 60;
    // Hours are rounded to the nearest hour, as Go's `d.Round(time.Hour)`.
    let hours = (seconds + 1800) / 3600;
    if seconds < 1 {
        "Less than a second".to_string()
    } else if seconds == 1 {
        "1 second".to_string()
    } else if seconds < 60 {
        format!("{seconds} seconds")
    } else if minutes == 1 {
        "About a minute".to_string()
    } else if minutes < 60 {
        format!("{minutes} minutes")
    } else if hours == 1 {
        "About an hour".to_string()
    } else if hours < 48 {
        format!("{hours} hours")
    } else if hours < 24 * 7 * 2 {
        format!("{} days", hours / 24)
    } else if hours < 24 * 30 * 2 {
        format!("{} weeks", hours / 24 / 7)
    } else if hours < 24 * 365 * 2 {
        format!("{} months", hours / 24 / 30)
    } else {
        format!("{} years", seconds / 3600 / 24 / 365)
    }
}

/// Docker's `stringid.TruncateID`: drops an algorithm prefix and keeps 12 characters.
pub fn truncate_id(id: &str) -> String {
    let hex = id.split_once(':').map_or(id, |(_, h)| h);
    hex.chars().take(12).collect()
}

/// Docker's `formatter.Ellipsis`: cuts to `max` characters, the last one being `…`.
pub fn ellipsis(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    if max == 0 {
        return String::new();
    }
    let mut out: String = text.chars().take(max - 1).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_match_docker() {
        assert_eq!(human_size_with_precision(4261376, 3), "4.26MB");
        assert_eq!(human_size_with_precision(0, 3), "0B");
        assert_eq!(human_size_with_precision(999, 3), "999B");
        assert_eq!(human_size_with_precision(1000, 3), "1kB");
        assert_eq!(human_size_with_precision(77_800_000, 3), "77.8MB");
        assert_eq!(human_size_with_precision(1_234_567_890, 3), "1.23GB");
        assert_eq!(human_size_with_precision(999_999, 3), "1e+03kB");
        assert_eq!(human_size(4261376), "4.261MB");
        assert_eq!(human_size(1_200_000), "1.2MB");
        assert_eq!(bytes_size(2_087_354_368), "1.944GiB");
        assert_eq!(bytes_size(512), "512B");
    }

    #[test]
    fn go_g_formatting() {
        assert_eq!(go_g(4.261376, 3), "4.26");
        assert_eq!(go_g(12.0, 3), "12");
        assert_eq!(go_g(0.000012345, 3), "1.23e-05");
        assert_eq!(go_g(100.0, 3), "100");
    }

    #[test]
    fn durations_match_go_units() {
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(1), "1 second");
        assert_eq!(human_duration(47), "47 seconds");
        assert_eq!(human_duration(60), "About a minute");
        assert_eq!(human_duration(119), "About a minute");
        assert_eq!(human_duration(120), "2 minutes");
        assert_eq!(human_duration(3599), "59 minutes");
        assert_eq!(human_duration(3600), "About an hour");
        assert_eq!(human_duration(5399), "About an hour");
        assert_eq!(human_duration(5400), "2 hours");
        assert_eq!(human_duration(47 * 3600), "47 hours");
        assert_eq!(human_duration(48 * 3600), "2 days");
        assert_eq!(human_duration(14 * 24 * 3600), "2 weeks");
        assert_eq!(human_duration(60 * 24 * 3600), "2 months");
        assert_eq!(human_duration(2 * 365 * 24 * 3600), "2 years");
    }

    #[test]
    fn ids_and_ellipsis() {
        assert_eq!(
            truncate_id("sha256:0123456789abcdef0123456789abcdef"),
            "0123456789ab"
        );
        assert_eq!(truncate_id("<missing>"), "<missing>");
        assert_eq!(ellipsis("abcdef", 4), "abc…");
        assert_eq!(ellipsis("abc", 4), "abc");
    }
}
