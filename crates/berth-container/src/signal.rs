//! Signal names and numbers as Docker accepts them (`SIGTERM`, `TERM`, `term`, `15`).

use std::str::FromStr;

use nix::sys::signal::Signal;

use crate::error::{Result, invalid};

/// Parses a signal; Docker's message on failure.
pub fn parse(text: &str) -> Result<i32> {
    let t = text.trim();
    if let Ok(n) = t.parse::<i32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
        return Err(invalid(format!("Invalid signal: {text}")));
    }
    let upper = t.to_ascii_uppercase();
    let full = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    if let Some(rest) = full.strip_prefix("SIGRTMIN+")
        && let Ok(n) = rest.parse::<i32>()
    {
        return Ok(34 + n);
    }
    Signal::from_str(&full)
        .map(|s| s as i32)
        .map_err(|_| invalid(format!("Invalid signal: {text}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        assert_eq!(parse("SIGTERM").unwrap(), 15);
        assert_eq!(parse("term").unwrap(), 15);
        assert_eq!(parse("KILL").unwrap(), 9);
        assert_eq!(parse("10").unwrap(), 10);
        assert_eq!(parse("SIGRTMIN+3").unwrap(), 37);
        assert_eq!(
            parse("BOGUS").unwrap_err().to_string(),
            "Invalid signal: BOGUS"
        );
        assert!(parse("0").is_err());
    }
}
