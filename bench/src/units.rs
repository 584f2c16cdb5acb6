//! Byte sizes as people type them on a command line (`4k`, `64KiB`, `1m`) and as reports print
//! them. Sizes here are binary: `k` is 1024 bytes, `m` is 1024 KiB, `g` is 1024 MiB, because
//! every size a probe takes is a block or file size that must stay 4 KiB aligned.

use anyhow::{bail, Context};

/// Parses `4096`, `4k`, `4K`, `4KiB`, `16kb`, `1m`, `1MiB`, `1g` into bytes (binary multiples).
///
/// ```
/// assert_eq!(keel_bench::units::parse_bytes("64k").ok(), Some(65_536));
/// assert_eq!(keel_bench::units::parse_bytes("1MiB").ok(), Some(1 << 20));
/// ```
pub fn parse_bytes(text: &str) -> anyhow::Result<usize> {
    let trimmed = text.trim();
    let digits_end = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (digits, suffix) = trimmed.split_at(digits_end);
    if digits.is_empty() {
        bail!("size {text:?} does not start with a number");
    }
    let count: usize = digits
        .parse()
        .with_context(|| format!("size {text:?}: number out of range"))?;
    let multiplier: usize = match suffix.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => bail!("size {text:?}: unknown unit {other:?} (use k, m or g)"),
    };
    count
        .checked_mul(multiplier)
        .with_context(|| format!("size {text:?} overflows usize"))
}

/// Formats a byte count the short way the CLI accepts it back: `4k`, `64k`, `1m`, `1536`.
pub fn format_bytes_short(bytes: usize) -> String {
    const UNITS: [(usize, &str); 3] = [(1 << 30, "g"), (1 << 20, "m"), (1 << 10, "k")];
    for (size, unit) in UNITS {
        if bytes >= size && bytes.is_multiple_of(size) {
            return format!("{}{unit}", bytes / size);
        }
    }
    bytes.to_string()
}

/// Formats a byte count for people: `64 B`, `4 KiB`, `1 MiB`, `1536 B`.
pub fn format_bytes_human(bytes: usize) -> String {
    const UNITS: [(usize, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (size, unit) in UNITS {
        if bytes >= size && bytes.is_multiple_of(size) {
            return format!("{} {unit}", bytes / size);
        }
    }
    format!("{bytes} B")
}

/// A size as a file-name tag: `4k`, `1m`, `64b`.
pub fn size_tag(bytes: usize) -> String {
    let short = format_bytes_short(bytes);
    if short.ends_with(|c: char| c.is_ascii_digit()) {
        short + "b"
    } else {
        short
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_suffixes() -> anyhow::Result<()> {
        assert_eq!(parse_bytes("4096")?, 4096);
        assert_eq!(parse_bytes("4k")?, 4096);
        assert_eq!(parse_bytes("16K")?, 16_384);
        assert_eq!(parse_bytes("64KiB")?, 65_536);
        assert_eq!(parse_bytes(" 1m ")?, 1 << 20);
        assert_eq!(parse_bytes("2g")?, 2 << 30);
        Ok(())
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse_bytes("").is_err());
        assert!(parse_bytes("k").is_err());
        assert!(parse_bytes("4x").is_err());
        assert!(parse_bytes("99999999999999999999g").is_err());
    }

    #[test]
    fn short_format_round_trips() -> anyhow::Result<()> {
        for bytes in [512, 4096, 16_384, 65_536, 1 << 20, 3 << 30, 1536] {
            assert_eq!(parse_bytes(&format_bytes_short(bytes))?, bytes);
        }
        assert_eq!(format_bytes_short(65_536), "64k");
        assert_eq!(format_bytes_short(1 << 20), "1m");
        assert_eq!(format_bytes_human(4096), "4 KiB");
        assert_eq!(format_bytes_human(64), "64 B");
        assert_eq!(size_tag(64), "64b");
        assert_eq!(size_tag(4096), "4k");
        Ok(())
    }
}
