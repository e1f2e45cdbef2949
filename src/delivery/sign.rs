//! Standard Webhooks signatures (<https://www.standardwebhooks.com>): the
//! receiver gets `webhook-id`, `webhook-timestamp` and `webhook-signature`
//! = `v1,` + base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}")), where the
//! key is the base64 part of a `whsec_…` secret. Any Standard Webhooks
//! library verifies it (the tests use the reference Python package).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

/// A signing key, from its `whsec_…` form.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn parse(s: &str) -> Result<Secret, String> {
        let b64 = s.trim().strip_prefix("whsec_").unwrap_or(s.trim());
        let key = STANDARD.decode(b64).map_err(|e| {
            format!("a webhook secret is whsec_ and base64 ({e}); make one with: echo whsec_$(head -c 32 /dev/urandom | base64)")
        })?;
        if key.len() < 16 {
            return Err("a webhook secret needs at least 16 bytes of key".into());
        }
        Ok(Secret(key))
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

/// The `webhook-signature` header for one attempt.
pub fn signature(secret: &Secret, msg_id: &str, timestamp: i64, body: &str) -> String {
    let mac = crate::s3::sigv4::hmac(&secret.0, format!("{msg_id}.{timestamp}.{body}").as_bytes());
    format!("v1,{}", STANDARD.encode(mac))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks reference libraries' tests.
    #[test]
    fn matches_the_reference_example() {
        let secret = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(
            signature(&secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, r#"{"test": 2432232314}"#),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn refuses_what_is_not_a_key() {
        assert!(Secret::parse("whsec_not base64!").is_err());
        assert!(Secret::parse("whsec_c2hvcnQ=").is_err());
    }
}
