//! Numbers and durations as people read them ("12,345,678", "1.5 GiB",
//! "4h 57m"), for status messages, the CLI and hook variables alike. A leaf:
//! depends on nothing of ours, so the store, the engine and the CLI can all use it.

/// 12345678 → "12,345,678".
/// Decodes `%XX` escapes and `+` (a URL query's space); bytes that do not
/// form valid UTF-8 are replaced.
pub fn percent_decode(s: &str) -> String {
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let escaped = (b[i] == b'%' && i + 2 < b.len())
            .then(|| Some(hex(b[i + 1])? * 16 + hex(b[i + 2])?))
            .flatten();
        match (b[i], escaped) {
            (_, Some(v)) => {
                out.push(v);
                i += 2;
            }
            (b'+', None) => out.push(b' '),
            (c, None) => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Bytes in binary units with one decimal.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// 17820 → "4h 57m"; 95 → "1m 35s"; 7 → "7s".
pub fn human_duration(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m {}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h {}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d {}h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// Fills `{field}` placeholders in `template` with `value(field)`; a field
/// not in `fields`, or a brace left open, is an error naming it.
pub fn fill(template: &str, fields: &[&str], value: impl Fn(&str) -> String) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let j = after.find('}').ok_or_else(|| format!("{template:?} has a {{ without its }}"))?;
        let field = &after[..j];
        if !fields.contains(&field) {
            return Err(format!("{template:?} names {{{field}}}; the fields are {}", fields.join(", ")));
        }
        out.push_str(&value(field));
        rest = &after[j + 1..];
    }
    out.push_str(rest);
    Ok(out)
}
