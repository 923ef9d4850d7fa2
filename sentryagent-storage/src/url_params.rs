//! Backend URL query parameters that this crate reads itself (pool sizes,
//! schema, key prefix...) before the URL goes to a driver.

use std::time::Duration;

use sentryagent_core::{Error, Result};

/// A URL split into its base and its query parameters.
pub(crate) struct Params {
    base: String,
    pairs: Vec<(String, String)>,
    fragment: Option<String>,
}

impl Params {
    /// Splits `url` at `?` (and `#`). Pairs keep their raw text.
    pub(crate) fn split(url: &str) -> Result<Params> {
        let (rest, fragment) = match url.split_once('#') {
            Some((r, f)) => (r, Some(f.to_owned())),
            None => (url, None),
        };
        let (base, query) = rest.split_once('?').unwrap_or((rest, ""));
        let pairs = query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (k.to_owned(), v.to_owned())
            })
            .collect();
        Ok(Params {
            base: base.to_owned(),
            pairs,
            fragment,
        })
    }

    /// Removes parameter `name` and returns its decoded value; a parameter
    /// given twice is [`Error::Invalid`].
    pub(crate) fn take(&mut self, name: &str) -> Result<Option<String>> {
        let mut found: Vec<String> = Vec::new();
        self.pairs.retain(|(k, v)| {
            if k == name {
                found.push(v.clone());
                false
            } else {
                true
            }
        });
        match found.len() {
            0 => Ok(None),
            1 => percent_decode(&found[0]).map(Some),
            _ => Err(Error::invalid(
                "url",
                format!("parameter `{name}` is given more than once"),
            )),
        }
    }

    /// The URL without the parameters taken.
    pub(crate) fn rest(&self) -> String {
        let mut out = self.base.clone();
        if !self.pairs.is_empty() {
            out.push('?');
            let query: Vec<String> = self
                .pairs
                .iter()
                .map(|(k, v)| {
                    if v.is_empty() {
                        k.clone()
                    } else {
                        format!("{k}={v}")
                    }
                })
                .collect();
            out.push_str(&query.join("&"));
        }
        if let Some(f) = &self.fragment {
            out.push('#');
            out.push_str(f);
        }
        out
    }
}

fn percent_decode(v: &str) -> Result<String> {
    let bytes = v.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| Error::invalid("url", "bad percent-encoding"))?;
                out.push(hex);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| Error::invalid("url", "parameter is not UTF-8"))
}

/// A non-negative integer parameter.
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(crate) fn parse_number<T: std::str::FromStr>(name: &str, v: &str) -> Result<T> {
    v.parse()
        .map_err(|_| Error::invalid("url", format!("`{name}` must be a non-negative integer")))
}

/// A duration: an integer and a unit (`ms`, `s`, `m`, `h`); no unit is
/// seconds.
pub(crate) fn parse_duration(name: &str, v: &str) -> Result<Duration> {
    let bad = || {
        Error::invalid(
            "url",
            format!("`{name}` must be a duration such as 500ms, 5s, 10m or 1h"),
        )
    };
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (digits, unit) = v.split_at(split);
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "" | "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.checked_mul(60).ok_or_else(bad)?),
        "h" => Duration::from_secs(n.checked_mul(3600).ok_or_else(bad)?),
        _ => return Err(bad()),
    };
    Ok(d)
}

/// A duration, or `none` (also `0`) for no limit.
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(crate) fn parse_optional_duration(name: &str, v: &str) -> Result<Option<Duration>> {
    if v == "none" {
        return Ok(None);
    }
    let d = parse_duration(name, v)?;
    Ok((!d.is_zero()).then_some(d))
}

/// The URL with any password replaced by `***`, for logs and `Debug`.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            let masked = if userinfo.contains(':') {
                format!("{user}:***")
            } else {
                user.to_owned()
            };
            format!("{scheme}://{masked}@{host}{tail}")
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_take_rest() {
        let mut p = Params::split("redis://h:1/0?a=1&prefix=sa%3Ax&b#frag").unwrap();
        assert_eq!(p.take("prefix").unwrap().as_deref(), Some("sa:x"));
        assert_eq!(p.take("missing").unwrap(), None);
        assert_eq!(p.rest(), "redis://h:1/0?a=1&b#frag");
        let mut p = Params::split("x://h?k=1&k=2").unwrap();
        assert!(p.take("k").is_err());
        let mut p = Params::split("x://h?k=%zz").unwrap();
        assert!(p.take("k").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(
            parse_duration("d", "250ms").unwrap(),
            Duration::from_millis(250)
        );
        assert_eq!(parse_duration("d", "7").unwrap(), Duration::from_secs(7));
        assert_eq!(parse_duration("d", "2m").unwrap(), Duration::from_secs(120));
        assert_eq!(
            parse_duration("d", "1h").unwrap(),
            Duration::from_secs(3600)
        );
        for bad in ["", "s", "1d", "-1s", "1.5s", &format!("{}h", u64::MAX)] {
            assert!(parse_duration("d", bad).is_err(), "{bad}");
        }
        assert_eq!(parse_optional_duration("d", "none").unwrap(), None);
        assert_eq!(parse_optional_duration("d", "0").unwrap(), None);
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("postgres://app:s3cret@db:5432/x?y=1"),
            "postgres://app:***@db:5432/x?y=1"
        );
        assert_eq!(redact("redis://:pw@h"), "redis://:***@h");
        assert_eq!(redact("redis://h:6379"), "redis://h:6379");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
    }
}
