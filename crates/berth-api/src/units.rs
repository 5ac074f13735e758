//! Docker's size strings (`64m`, `1.5GiB`, `10 MB`), parsed as go-units does: the one parser
//! for the CLI's memory and tmpfs flags and the log drivers' `max-size`.
//!
//! go-units has two entry points over one grammar, and Docker picks per option:
//! - [`ram_in_bytes`] (`RAMInBytes`, binary: `k` = 1024): `--memory`, `--memory-swap`,
//!   `--memory-reservation`, `--shm-size`, `--mount tmpfs-size=`;
//! - [`from_human_size`] (`FromHumanSize`, decimal: `k` = 1000): the `json-file` and `local`
//!   log drivers' `max-size`.
//!
//! The grammar: a number (what Go's `ParseFloat` reads: `32`, `0.3`, `.5`, `32.`, `1e3`), then
//! either one space and a suffix or the suffix directly; the suffix is empty, `b`, or one of
//! `k m g t p` optionally followed by `b` or `ib`, case-insensitive. Nothing else: no leading or
//! trailing blanks, no second space. The result is truncated towards zero.
//!
//! **Negative sizes are refused, `-1` included** (go-units: "backward compatibility: reject
//! negative sizes"; its regexp before 2022 refused them too). Where Docker accepts `-1` it does
//! so before calling go-units: `--memory-swap -1` (unlimited swap) is matched literally by the
//! flag, and the caller does the same. `-0` is `0`, as in Go.

/// Why a size string was refused. The texts are go-units' (and so what the docker CLI prints
/// after `invalid argument "…" for "-m, --memory" flag: `).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    /// No digit at all, a negative number, or a size beyond `i64`.
    #[error("invalid size: '{0}'")]
    InvalidSize(String),
    /// The number part is not a number (the text is Go's `strconv.ParseFloat` error).
    #[error("strconv.ParseFloat: parsing {0:?}: invalid syntax")]
    InvalidNumber(String),
    /// An unknown unit, or extra characters after it.
    #[error("invalid suffix: '{0}'")]
    InvalidSuffix(String),
}

/// go-units `RAMInBytes`: binary multiples (`1k` = 1024, `1.5g` = 1.5 × 2³⁰).
pub fn ram_in_bytes(text: &str) -> Result<i64, SizeError> {
    parse(text, 1024.0)
}

/// go-units `FromHumanSize`: decimal multiples (`1k` = 1000, `10m` = 10,000,000).
pub fn from_human_size(text: &str) -> Result<i64, SizeError> {
    parse(text, 1000.0)
}

fn parse(text: &str, base: f64) -> Result<i64, SizeError> {
    let invalid_size = || SizeError::InvalidSize(text.to_string());
    // With a space, the number is what comes before the first one; without, the suffix starts
    // after the last digit or dot (so `1k2` is a number that does not parse, not `1` + `k2`).
    let (number, suffix) = match text.split_once(' ') {
        Some(parts) => parts,
        None => {
            let last = text
                .rfind(|c: char| c.is_ascii_digit() || c == '.')
                .ok_or_else(invalid_size)?;
            text.split_at(last + 1)
        }
    };
    let size = parse_float(number)?;
    if size < 0.0 {
        return Err(invalid_size());
    }
    let multiplier = multiplier(suffix, base)?;
    let bytes = size * multiplier;
    // 2^63 and above (and NaN/infinity, which Rust's parser reads from `inf`/`nan` and Go
    // would turn into garbage) do not fit.
    if !bytes.is_finite() || bytes >= i64::MAX as f64 {
        return Err(invalid_size());
    }
    Ok(bytes as i64)
}

/// The number part, as Go's `ParseFloat` would read it for these strings. Rust's parser also
/// accepts `inf`/`nan`; `parse` refuses what they lead to.
fn parse_float(number: &str) -> Result<f64, SizeError> {
    number
        .parse::<f64>()
        .map_err(|_| SizeError::InvalidNumber(number.to_string()))
}

fn multiplier(suffix: &str, base: f64) -> Result<f64, SizeError> {
    if suffix.is_empty() {
        return Ok(1.0);
    }
    // go-units reports an over-long suffix as given, a bad short one lowercased.
    if suffix.len() > 3 {
        return Err(SizeError::InvalidSuffix(suffix.to_string()));
    }
    let lower = suffix.to_ascii_lowercase();
    let bad = || SizeError::InvalidSuffix(lower.clone());
    let (unit, rest) = lower.as_bytes().split_first().ok_or_else(bad)?;
    let power = match unit {
        b'b' if rest.is_empty() => return Ok(1.0),
        b'k' => 1,
        b'm' => 2,
        b'g' => 3,
        b't' => 4,
        b'p' => 5,
        _ => return Err(bad()),
    };
    match rest {
        [] | [b'b'] | [b'i', b'b'] => Ok(base.powi(power)),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KIB: i64 = 1024;
    const MIB: i64 = 1024 * KIB;
    const GIB: i64 = 1024 * MIB;
    const PIB: i64 = 1024 * 1024 * GIB;

    #[test]
    fn ram_in_bytes_uses_binary_units() {
        for (text, want) in [
            ("32", 32),
            ("32b", 32),
            ("32B", 32),
            ("32k", 32 * KIB),
            ("32K", 32 * KIB),
            ("32kb", 32 * KIB),
            ("32Kib", 32 * KIB),
            ("32KIB", 32 * KIB),
            ("64m", 64 * MIB),
            ("1g", GIB),
            ("1.5GiB", 3 * GIB / 2),
            ("32Pb", 32 * PIB),
            ("32P", 32 * PIB),
            ("32.3", 32),
            ("0.3MB", (0.3 * MIB as f64) as i64),
            ("32.3 mb", (32.3 * MIB as f64) as i64),
            ("10 MB", 10 * MIB),
        ] {
            assert_eq!(ram_in_bytes(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn from_human_size_uses_decimal_units() {
        for (text, want) in [
            ("0", 0),
            ("0 B", 0),
            ("32k", 32_000),
            ("32Kb", 32_000),
            ("10m", 10_000_000),
            ("32.5 kB", 32_500),
            ("32.5 B", 32),
            ("0.3 K", 300),
            (".3kB", 300),
            ("32.", 32),
            ("32. B", 32),
            ("0 ", 0),
            ("1e3", 1000),
        ] {
            assert_eq!(from_human_size(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn minus_one_and_other_negatives_are_refused_but_minus_zero_is_zero() {
        for parse in [ram_in_bytes, from_human_size] {
            assert_eq!(parse("-1"), Err(SizeError::InvalidSize("-1".into())));
            assert_eq!(parse("-32 B"), Err(SizeError::InvalidSize("-32 B".into())));
            assert_eq!(parse("-0"), Ok(0));
            assert_eq!(parse("-0 b"), Ok(0));
        }
    }

    #[test]
    fn malformed_sizes_are_refused_with_go_units_messages() {
        for bad in [
            "", "hello", ".", ". ", " ", " 0", " 0 B", "0b ", "0 B ", "32b.", "32 b.", "32 bb",
            "32 b b", "32  b", " 32 ", "32m b", "32bm", "12q", "1ki", "1ib", "1k2", "inf b", "nan",
            "1e30p",
        ] {
            assert!(ram_in_bytes(bad).is_err(), "RAMInBytes({bad:?})");
            assert!(from_human_size(bad).is_err(), "FromHumanSize({bad:?})");
        }
        assert_eq!(
            ram_in_bytes("x").unwrap_err().to_string(),
            "invalid size: 'x'"
        );
        assert_eq!(
            ram_in_bytes("12Q").unwrap_err().to_string(),
            "invalid suffix: 'q'"
        );
        assert_eq!(
            ram_in_bytes("12kbytes").unwrap_err().to_string(),
            "invalid suffix: 'kbytes'"
        );
        assert_eq!(
            ram_in_bytes("1k2").unwrap_err().to_string(),
            "strconv.ParseFloat: parsing \"1k2\": invalid syntax"
        );
    }
}
