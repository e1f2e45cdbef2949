//! The browser dashboard (`ui/`), embedded in the binary and served without a
//! token: its files hold no data, and the page asks for the token itself.

use serde_json::json;

use super::reply::{fail, reply, Reply};

/// The browser dashboard (`ui/`), embedded so the binary serves it with no
/// files beside it and no outside assets (the CSP forbids any).
pub(super) fn ui_asset(path: &str) -> Reply {
    let (body, content_type) = match path {
        "/ui" => {
            let mut r = reply(301, json!({}));
            r.headers.push(("Location", "/ui/".into()));
            return r;
        }
        "/ui/" | "/ui/index.html" => (include_str!("../../ui/index.html"), "text/html; charset=utf-8"),
        "/ui/app.js" => (include_str!("../../ui/app.js"), "text/javascript; charset=utf-8"),
        "/ui/app.css" => (include_str!("../../ui/app.css"), "text/css; charset=utf-8"),
        _ => return fail(404, "NOT_FOUND", "no such dashboard file; open /ui/"),
    };
    Reply {
        file: None,
        status: 200,
        body: body.to_owned(),
        content_type,
        headers: vec![
            (
                "Content-Security-Policy",
                "default-src 'self'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'".into(),
            ),
            ("X-Content-Type-Options", "nosniff".into()),
            ("Referrer-Policy", "no-referrer".into()),
            ("Cache-Control", "no-cache".into()),
        ],
    }
}
