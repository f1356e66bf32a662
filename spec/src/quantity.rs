//! Quantities in the forms Kubernetes users already type.
//!
//! - memory: plain bytes (`67108864`), binary suffixes (`Ki Mi Gi Ti`) and
//!   decimal suffixes (`k M G T`), e.g. `64Mi`, `1Gi`, `500M`;
//! - CPU: millicores (`500m`) or cores (`0.5`, `2`);
//! - durations: `250ms`, `5s`, `1m`, `1h30m`, `1.5s`.
//!
//! Every error says what was wrong and which forms are accepted, because it is
//! printed straight to the user.

use std::time::Duration;

/// A quantity that could not be parsed. The message names the accepted forms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    /// Not a memory quantity.
    #[error("{0:?} is not a memory quantity (use a byte count like 67108864, or 64Mi, 1Gi, 500M)")]
    Memory(String),
    /// Not a CPU quantity.
    #[error("{0:?} is not a CPU quantity (use millicores like 250m, or cores like 0.5 or 2)")]
    Cpu(String),
    /// Not a duration.
    #[error("{0:?} is not a duration (use forms like 500ms, 5s, 2m, 1h30m)")]
    Duration(String),
}

const MEMORY_SUFFIXES: [(&str, u64); 8] = [
    ("Ki", 1 << 10),
    ("Mi", 1 << 20),
    ("Gi", 1 << 30),
    ("Ti", 1 << 40),
    ("k", 1_000),
    ("M", 1_000_000),
    ("G", 1_000_000_000),
    ("T", 1_000_000_000_000),
];

/// Parses a memory quantity into bytes: `64Mi` → 67108864.
pub fn parse_memory_bytes(text: &str) -> Result<u64, QuantityError> {
    let err = || QuantityError::Memory(text.to_string());
    let trimmed = text.trim();
    let (number, multiplier) = MEMORY_SUFFIXES
        .iter()
        .find_map(|(suffix, m)| trimmed.strip_suffix(suffix).map(|n| (n, *m)))
        .unwrap_or((trimmed, 1));
    // Whole numbers exactly (f64 loses bytes past 2^53), fractions as decimals.
    if !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()) {
        return number
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(multiplier))
            .ok_or_else(err);
    }
    let value = parse_decimal(number).ok_or_else(err)?;
    let bytes = value * multiplier as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 || bytes.fract() != 0.0 {
        return Err(err());
    }
    Ok(bytes as u64)
}

/// Parses a CPU quantity into millicores: `500m` → 500, `0.5` → 500, `2` → 2000.
pub fn parse_cpu_millis(text: &str) -> Result<u64, QuantityError> {
    let err = || QuantityError::Cpu(text.to_string());
    let trimmed = text.trim();
    let millis = match trimmed.strip_suffix('m') {
        Some(number) => parse_decimal(number).ok_or_else(err)?,
        None => parse_decimal(trimmed).ok_or_else(err)? * 1000.0,
    };
    if !millis.is_finite() || millis <= 0.0 || millis.fract() != 0.0 || millis > 1e12 {
        return Err(err());
    }
    Ok(millis as u64)
}

const DURATION_UNITS: [(&str, f64); 6] = [
    ("ms", 1e-3),
    ("us", 1e-6),
    ("ns", 1e-9),
    ("h", 3600.0),
    ("m", 60.0),
    ("s", 1.0),
];

/// Parses a Go/Kubernetes-style duration: `500ms`, `5s`, `1h30m`, `1.5s`.
pub fn parse_duration(text: &str) -> Result<Duration, QuantityError> {
    let err = || QuantityError::Duration(text.to_string());
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(err());
    }
    let mut seconds = 0.0f64;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(err)?;
        let value = parse_decimal(&rest[..number_len]).ok_or_else(err)?;
        rest = &rest[number_len..];
        let (unit, scale) = DURATION_UNITS
            .iter()
            .find(|(unit, _)| rest.starts_with(unit))
            .ok_or_else(err)?;
        seconds += value * scale;
        rest = &rest[unit.len()..];
    }
    Duration::try_from_secs_f64(seconds).map_err(|_| err())
}

/// A non-negative decimal number: digits with at most one dot, nothing else
/// (no signs, exponents or `inf`, which `f64::from_str` would accept).
fn parse_decimal(text: &str) -> Option<f64> {
    let valid = !text.is_empty()
        && text.chars().all(|c| c.is_ascii_digit() || c == '.')
        && text.chars().filter(|c| *c == '.').count() <= 1
        && text != ".";
    if valid {
        text.parse().ok()
    } else {
        None
    }
}

/// Formats bytes the way `kubectl` users read them: `64Mi`, `1536Ki`, `100`.
pub fn format_memory_bytes(bytes: u64) -> String {
    for (suffix, m) in MEMORY_SUFFIXES[..4].iter().rev() {
        if bytes >= *m && bytes.is_multiple_of(*m) {
            return format!("{}{}", bytes / m, suffix);
        }
    }
    bytes.to_string()
}

/// Formats several byte counts in one binary unit, the largest that `scale`
/// reaches (`0.08Gi`, `23.54Gi`): a table column reads in one unit, with
/// at most two decimals.
pub fn format_memory_in_unit_of(bytes: &[u64], scale: u64) -> Vec<String> {
    let (suffix, unit) = MEMORY_SUFFIXES[..4]
        .iter()
        .rev()
        .find(|(_, m)| scale >= *m)
        .copied()
        .unwrap_or(("", 1));
    bytes
        .iter()
        .map(|b| {
            if unit == 1 {
                return b.to_string();
            }
            let text = format!("{:.2}", *b as f64 / unit as f64);
            let text = text.trim_end_matches('0').trim_end_matches('.');
            format!("{text}{suffix}")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_column_of_memory_reads_in_one_unit() {
        assert_eq!(
            format_memory_in_unit_of(&[80 << 20, 24683784 << 10], 24683784 << 10),
            ["0.08Gi", "23.54Gi"]
        );
        assert_eq!(
            format_memory_in_unit_of(&[0, 512 << 20], 512 << 20),
            ["0Mi", "512Mi"]
        );
        assert_eq!(format_memory_in_unit_of(&[100, 900], 900), ["100", "900"]);
        assert_eq!(format_memory_in_unit_of(&[3 << 30], 0), ["3221225472"]);
    }

    #[test]
    fn memory_forms() {
        assert_eq!(parse_memory_bytes("64Mi"), Ok(64 << 20));
        assert_eq!(parse_memory_bytes("1Gi"), Ok(1 << 30));
        assert_eq!(parse_memory_bytes("500M"), Ok(500_000_000));
        assert_eq!(parse_memory_bytes("67108864"), Ok(67108864));
        assert_eq!(parse_memory_bytes("1.5Ki"), Ok(1536));
        assert_eq!(parse_memory_bytes("2k"), Ok(2000));
    }

    #[test]
    fn memory_rejects_with_hint() {
        for bad in ["64Mb", "", "Mi", "-1", "1e9", "0.5", "64 Mi", "inf"] {
            let e = parse_memory_bytes(bad).unwrap_err();
            assert!(e.to_string().contains("64Mi"), "{bad}: {e}");
        }
    }

    #[test]
    fn cpu_forms() {
        assert_eq!(parse_cpu_millis("250m"), Ok(250));
        assert_eq!(parse_cpu_millis("0.5"), Ok(500));
        assert_eq!(parse_cpu_millis("2"), Ok(2000));
        for bad in ["", "0", "250mc", "-1", "0.0001", "m", "1.2.3"] {
            assert!(parse_cpu_millis(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        for bad in ["", "5", "s", "5x", "-1s", "5s3"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn formats_memory() {
        assert_eq!(format_memory_bytes(64 << 20), "64Mi");
        assert_eq!(format_memory_bytes(1536), "1536");
        assert_eq!(format_memory_bytes(3 << 10), "3Ki");
    }
}
