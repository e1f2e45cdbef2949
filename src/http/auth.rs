//! Who may call the API: a bearer token (`DATA_DIR/token`), compared in
//! constant time. Checked once, in `route`, before any handler that needs it.

use tiny_http::Request;

use super::Api;

/// Constant-time comparison, so response timing does not reveal the token.
pub(super) fn same(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() ^ b.len()) as u8;
    for i in 0..a.len().max(b.len()) {
        diff |= a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0xff);
    }
    diff == 0
}

impl Api {
    pub(super) fn authorized(&self, req: &Request) -> bool {
        req.headers().iter().filter(|h| h.field.equiv("Authorization")).any(|h| {
            let v = h.value.as_str();
            v.strip_prefix("Bearer ")
                .is_some_and(|t| same(t.trim().as_bytes(), self.token.as_bytes()))
        })
    }
}
