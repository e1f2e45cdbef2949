//! Just enough XML for S3's answers: the text of the first `<Tag>`, and the
//! `<Tag>…</Tag>` blocks of a listing. S3 answers are flat, namespaced only on
//! the root, and never use CDATA, so a tag scanner reads them exactly; a full
//! XML parser would be a dependency for five element names.

/// The unescaped text of the first `<tag>…</tag>` in `s`.
pub fn first(s: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = s.find(&open)? + open.len();
    let end = s[start..].find(&close)? + start;
    Some(unescape(&s[start..end]))
}

/// The inner text of every `<tag>…</tag>` block, in order.
pub fn blocks(s: &str, tag: &str) -> Vec<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find(&open) {
        let after = &rest[i + open.len()..];
        let Some(j) = after.find(&close) else { break };
        out.push(after[..j].to_owned());
        rest = &after[j + close.len()..];
    }
    out
}

pub fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&#34;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_listing() {
        let x = r#"<?xml version="1.0"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><IsTruncated>false</IsTruncated>
<Contents><Key>a&amp;b.zip</Key><Size>12</Size><ETag>&quot;abc&quot;</ETag></Contents><Contents><Key>c.zip</Key><Size>3</Size></Contents></ListBucketResult>"#;
        let b = blocks(x, "Contents");
        assert_eq!(b.len(), 2);
        assert_eq!(first(&b[0], "Key").as_deref(), Some("a&b.zip"));
        assert_eq!(first(&b[0], "ETag").as_deref(), Some("\"abc\""));
        assert_eq!(first(x, "IsTruncated").as_deref(), Some("false"));
        assert_eq!(first(x, "NextContinuationToken"), None);
    }
}
