//! Sizes as people write them (`512MiB`, `1.5GiB`, `2KB`): read by the settings and by the
//! API's `memoryLimit`, so it lives with the wire types, which depend on nothing of the
//! daemon's.

/// `"512MiB"` → 536870912. Binary units `KiB`, `MiB`, `GiB`, `TiB` (also `K`, `M`, `G`, `T`,
/// as `df -h` prints them), decimal units `KB`, `MB`, `GB`, `TB`, a fraction (`"1.5GiB"`), or
/// plain bytes; case does not matter.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let bad = || format!("'{s}' is not a size (examples: 512MiB, 1GiB, 1073741824)");
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = (&t[..split], t[split..].trim());
    let scale: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => return Err(bad()),
    };
    if let Ok(n) = number.parse::<u64>() {
        return n.checked_mul(scale).ok_or_else(bad);
    }
    let x: f64 = number.parse().map_err(|_| bad())?;
    let bytes = x * scale as f64;
    // Exact below 2^53 bytes (8 PiB), far past any quota bro accepts.
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(bad());
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_in_binary_and_decimal_units() {
        for (text, bytes) in [
            ("1073741824", 1 << 30),
            ("1GiB", 1 << 30),
            ("1 gib", 1 << 30),
            ("512MiB", 512 << 20),
            ("512M", 512 << 20),
            ("1.5GiB", 3 << 29),
            ("2KB", 2000),
            ("3GB", 3_000_000_000),
            ("1T", 1 << 40),
            ("7b", 7),
        ] {
            assert_eq!(parse_size(text), Ok(bytes), "{text}");
        }
        for bad in [
            "",
            "GiB",
            "-1GiB",
            "1 GiBs",
            "1e3",
            "lots",
            "1.2.3M",
            "99999999999999999999",
        ] {
            let err = parse_size(bad).unwrap_err();
            assert!(err.contains("is not a size"), "{bad}: {err}");
        }
    }
}
