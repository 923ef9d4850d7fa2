//! Validators of public documents for conditional requests (RFC 9110
//! §8.8, §13): a strong `ETag` (a hash of the bytes served) and a
//! `Last-Modified` time, and the decision whether a conditional GET is
//! answered `304 Not Modified`. Directory crawlers and caches revalidate
//! marketplace listings with them instead of downloading them again.
//!
//! ```
//! use sentryagent_core::conditional::Validators;
//! use sentryagent_core::Timestamp;
//!
//! let v = Validators::of(b"{}", Some(Timestamp::from_unix_secs(784_111_777)));
//! assert_eq!(v.last_modified_header().unwrap(), "Sun, 06 Nov 1994 08:49:37 GMT");
//! assert!(v.not_modified(Some(v.etag.as_str()), None));
//! assert!(v.not_modified(None, Some("Sun, 06 Nov 1994 08:49:37 GMT")));
//! assert!(!v.not_modified(None, Some("Sun, 06 Nov 1994 08:49:36 GMT")));
//! // If-None-Match decides alone when present.
//! assert!(!v.not_modified(Some("\"other\""), Some("Sun, 06 Nov 1994 08:49:37 GMT")));
//! ```

use base64::Engine as _;
use sha2::{Digest as _, Sha256};
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;

use crate::Timestamp;

/// IMF-fixdate (RFC 9110 §5.6.7), e.g. `Sun, 06 Nov 1994 08:49:37 GMT`.
const IMF_FIXDATE: &[BorrowedFormatItem<'static>] = format_description!(
    "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
);

/// The validators of one representation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validators {
    /// A strong entity tag, quoted: `"` + base64url of the first 16 bytes
    /// of the SHA-256 of the bytes + `"`.
    pub etag: String,
    /// When what the document says last changed, if known exactly.
    pub last_modified: Option<Timestamp>,
}

impl Validators {
    /// The validators of `body` (the exact bytes served).
    pub fn of(body: &[u8], last_modified: Option<Timestamp>) -> Validators {
        let digest = Sha256::digest(body);
        Validators {
            etag: format!(
                "\"{}\"",
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..16])
            ),
            last_modified,
        }
    }

    /// `Last-Modified` as an IMF-fixdate.
    pub fn last_modified_header(&self) -> Option<String> {
        let t = time::OffsetDateTime::from_unix_timestamp(self.last_modified?.unix_secs()).ok()?;
        t.format(IMF_FIXDATE).ok()
    }

    /// Whether a GET with these request headers is answered 304: an
    /// `If-None-Match` listing this entity tag (weak comparison, or `*`);
    /// without `If-None-Match`, an `If-Modified-Since` (IMF-fixdate) not
    /// before the last modification. Unparsable dates are ignored.
    pub fn not_modified(
        &self,
        if_none_match: Option<&str>,
        if_modified_since: Option<&str>,
    ) -> bool {
        if let Some(list) = if_none_match {
            let mine = self.etag.trim_start_matches("W/");
            return list
                .split(',')
                .map(str::trim)
                .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == mine);
        }
        let (Some(since), Some(modified)) = (if_modified_since, self.last_modified) else {
            return false;
        };
        parse_http_date(since).is_some_and(|since| modified.unix_secs() <= since.unix_secs())
    }
}

/// An IMF-fixdate, `None` for anything else (the obsolete formats
/// included).
pub fn parse_http_date(s: &str) -> Option<Timestamp> {
    let t = time::PrimitiveDateTime::parse(s.trim(), IMF_FIXDATE).ok()?;
    Some(Timestamp::from_unix_secs(t.assume_utc().unix_timestamp()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_and_dates() {
        let v = Validators::of(b"abc", Some(Timestamp::from_unix_secs(1_700_000_000)));
        assert_eq!(v.etag.len(), 24);
        assert_ne!(Validators::of(b"abd", None).etag, v.etag);
        let weak = format!("W/{}", v.etag);
        assert!(v.not_modified(Some(&format!("\"x\", {weak}")), None));
        assert!(v.not_modified(Some("*"), None));
        assert!(!v.not_modified(Some("\"x\""), None));
        let header = v.last_modified_header().unwrap();
        assert_eq!(header, "Tue, 14 Nov 2023 22:13:20 GMT");
        assert_eq!(
            parse_http_date(&header),
            Some(Timestamp::from_unix_secs(1_700_000_000))
        );
        assert!(v.not_modified(None, Some("Wed, 15 Nov 2023 00:00:00 GMT")));
        assert!(!v.not_modified(None, Some("Tue, 14 Nov 2023 22:13:19 GMT")));
        // Obsolete or broken dates are ignored.
        assert!(!v.not_modified(None, Some("Tuesday, 14-Nov-23 22:13:20 GMT")));
        assert!(!v.not_modified(None, Some("yesterday")));
        assert!(!Validators::of(b"", None).not_modified(None, Some(&header)));
        assert_eq!(Validators::of(b"", None).last_modified_header(), None);
    }
}
