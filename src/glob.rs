//! File-name globs for watched inboxes and campaigns: `*`, `?` and `{a,b}`
//! alternatives, matched against a name (not a path). A leaf: depends on
//! nothing of ours.

/// Glob match on a file name: `*`, `?` and `{a,b}` alternatives.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    if let (Some(open), Some(close)) = (pattern.find('{'), pattern.find('}')) {
        if open < close {
            let (head, tail) = (&pattern[..open], &pattern[close + 1..]);
            return pattern[open + 1..close]
                .split(',')
                .any(|alt| glob_match(&format!("{head}{alt}{tail}"), name));
        }
    }
    fn rec(p: &[u8], n: &[u8]) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (Some(b'*'), _) => rec(&p[1..], n) || (!n.is_empty() && rec(p, &n[1..])),
            (Some(b'?'), Some(_)) => rec(&p[1..], &n[1..]),
            (Some(a), Some(b)) if a == b => rec(&p[1..], &n[1..]),
            _ => false,
        }
    }
    rec(pattern.as_bytes(), name.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stars_marks_and_alternatives() {
        for n in ["a.zip", "b.tar.gz", "c.tgz", "d.tar"] {
            assert!(glob_match("*.{zip,tar,tar.gz,tgz}", n), "{n}");
        }
        assert!(!glob_match("*.{zip,tar}", "x.zip.part"));
        assert!(glob_match("scan-??.zip", "scan-01.zip"));
    }
}
