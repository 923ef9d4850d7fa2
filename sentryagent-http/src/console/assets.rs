//! The console's own stylesheet and script, embedded in the binary and
//! served under a path that changes with their content (so they can be
//! cached for a year).

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::page::PageError;

/// The stylesheet (the dashboard pages' part appended).
pub(crate) const CSS: &[u8] = concat!(
    include_str!("assets/console.css"),
    include_str!("assets/dashboard.css")
)
.as_bytes();
/// The script (the dashboard pages' part appended).
pub(crate) const JS: &[u8] = concat!(
    include_str!("assets/console.js"),
    include_str!("assets/dashboard.js")
)
.as_bytes();

/// FNV-1a, 64 bits: a content fingerprint for the asset paths (not a
/// security measure).
const fn fingerprint(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        h ^= bytes[i] as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    h
}

const CSS_VERSION: u64 = fingerprint(CSS);
const JS_VERSION: u64 = fingerprint(JS);

/// The path of the stylesheet, below the console's prefix.
pub(crate) fn css_path() -> String {
    format!("/assets/{CSS_VERSION:016x}/console.css")
}

/// The path of the script, below the console's prefix.
pub(crate) fn js_path() -> String {
    format!("/assets/{JS_VERSION:016x}/console.js")
}

/// `GET /assets/{version}/{file}`: the file of that version, immutable; any
/// other version or file is 404.
pub(crate) async fn serve(Path((version, file)): Path<(String, String)>) -> Response {
    let (body, kind, current) = match file.as_str() {
        "console.css" => (CSS, "text/css; charset=utf-8", CSS_VERSION),
        "console.js" => (JS, "text/javascript; charset=utf-8", JS_VERSION),
        _ => return PageError::not_found("file").into_response(),
    };
    if version != format!("{current:016x}") {
        return PageError::not_found("file").into_response();
    }
    let mut res = (StatusCode::OK, body).into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    res
}
