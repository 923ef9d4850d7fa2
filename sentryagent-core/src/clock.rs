//! Time, injected: every expiry, window, grace period and rate limit reads a
//! [`Clock`], so tests use a [`ManualClock`] and never sleep.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

/// A point in time: microseconds since the Unix epoch (UTC).
///
/// Serialized as an RFC 3339 string (`2026-11-22T10:00:00.123456Z`); also
/// accepts an integer number of microseconds when deserializing.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The Unix epoch.
    pub const EPOCH: Timestamp = Timestamp(0);

    /// From microseconds since the epoch.
    pub const fn from_unix_micros(micros: i64) -> Self {
        Timestamp(micros)
    }

    /// From whole seconds since the epoch.
    pub const fn from_unix_secs(secs: i64) -> Self {
        Timestamp(secs.saturating_mul(1_000_000))
    }

    /// Microseconds since the epoch.
    pub const fn unix_micros(self) -> i64 {
        self.0
    }

    /// Whole seconds since the epoch (floor).
    pub const fn unix_secs(self) -> i64 {
        self.0.div_euclid(1_000_000)
    }

    /// This time plus a duration (saturating).
    pub fn plus(self, d: Duration) -> Self {
        Timestamp(
            self.0
                .saturating_add(i64::try_from(d.as_micros()).unwrap_or(i64::MAX)),
        )
    }

    /// This time minus a duration (saturating).
    pub fn minus(self, d: Duration) -> Self {
        Timestamp(
            self.0
                .saturating_sub(i64::try_from(d.as_micros()).unwrap_or(i64::MAX)),
        )
    }

    /// The duration from `earlier` to `self`, zero if `earlier` is later.
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_micros(u64::try_from(self.0.saturating_sub(earlier.0)).unwrap_or(0))
    }

    /// As a `time::OffsetDateTime` (UTC).
    pub fn to_offset_date_time(self) -> time::OffsetDateTime {
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0) * 1000)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
    }

    /// From a `time::OffsetDateTime` (saturating outside the i64 range).
    pub fn from_offset_date_time(t: time::OffsetDateTime) -> Self {
        let micros = t.unix_timestamp_nanos() / 1000;
        Timestamp(i64::try_from(micros).unwrap_or(if micros < 0 { i64::MIN } else { i64::MAX }))
    }

    /// The UTC calendar day, as `YYYY-MM-DD` (the daily usage bucket).
    pub fn utc_day(self) -> String {
        let d = self.to_offset_date_time().date();
        format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
    }

    /// The UTC calendar month, as `YYYY-MM` (the monthly usage bucket).
    pub fn utc_month(self) -> String {
        let d = self.to_offset_date_time().date();
        format!("{:04}-{:02}", d.year(), u8::from(d.month()))
    }

    /// RFC 3339 text (for years 0 to 9999; other times print as their
    /// number of microseconds).
    pub fn to_rfc3339(self) -> String {
        self.rfc3339_checked().unwrap_or_else(|| self.0.to_string())
    }

    fn rfc3339_checked(self) -> Option<String> {
        let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0) * 1000).ok()?;
        if !(0..=9999).contains(&t.year()) {
            return None;
        }
        t.format(&time::format_description::well_known::Rfc3339)
            .ok()
    }

    /// Parses RFC 3339 text.
    pub fn parse_rfc3339(s: &str) -> Option<Self> {
        time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
            .ok()
            .map(Self::from_offset_date_time)
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({})", self.to_rfc3339())
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl Serialize for Timestamp {
    /// RFC 3339 text for years 0 to 9999; outside that range (which RFC 3339
    /// cannot write) the integer number of microseconds, so that every
    /// value survives a round trip through a storing backend.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.rfc3339_checked() {
            Some(text) => s.serialize_str(&text),
            None => s.serialize_i64(self.0),
        }
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // A visitor rather than an untagged enum: stored records hold
        // several timestamps and are decoded on every token request; an
        // untagged enum buffers each value and builds an error for the
        // variant that does not match.
        d.deserialize_any(TimestampVisitor)
    }
}

/// Accepts an RFC 3339 string or an integer number of microseconds.
struct TimestampVisitor;

impl de::Visitor<'_> for TimestampVisitor {
    type Value = Timestamp;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an RFC 3339 timestamp or an integer number of microseconds")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Timestamp, E> {
        Ok(Timestamp(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Timestamp, E> {
        i64::try_from(v)
            .map(Timestamp)
            .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &self))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Timestamp, E> {
        Timestamp::parse_rfc3339(s).ok_or_else(|| E::custom("expected an RFC 3339 timestamp"))
    }
}

/// A source of the current time.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The current time.
    fn now(&self) -> Timestamp;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let micros = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        Timestamp(micros)
    }
}

/// A clock that moves only when told to; clones share the same time.
#[derive(Debug, Clone, Default)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    /// A manual clock starting at `start`.
    pub fn new(start: Timestamp) -> Self {
        ManualClock(Arc::new(AtomicI64::new(start.0)))
    }

    /// Moves the clock forward.
    pub fn advance(&self, d: Duration) {
        let micros = i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
        self.0.fetch_add(micros, Ordering::SeqCst);
    }

    /// Sets the clock.
    pub fn set(&self, t: Timestamp) {
        self.0.store(t.0, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_and_text() {
        let t = Timestamp::from_unix_secs(1_763_700_000);
        assert_eq!(t.utc_day(), "2025-11-21");
        assert_eq!(t.utc_month(), "2025-11");
        assert_eq!(Timestamp::parse_rfc3339(&t.to_rfc3339()), Some(t));
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), t);
        assert_eq!(
            serde_json::from_str::<Timestamp>("1763700000000000").unwrap(),
            t
        );
    }

    #[test]
    fn every_timestamp_survives_serialization() {
        for micros in [
            i64::MIN,
            -1,
            0,
            1,
            253_402_300_799_999_999,
            253_402_300_800_000_000,
            i64::MAX,
        ] {
            let t = Timestamp::from_unix_micros(micros);
            let json = serde_json::to_string(&t).unwrap();
            assert_eq!(
                serde_json::from_str::<Timestamp>(&json).unwrap(),
                t,
                "{json}"
            );
        }
    }

    #[test]
    fn deserializes_only_text_and_integer_micros() {
        assert_eq!(
            serde_json::from_str::<Timestamp>("-5").unwrap(),
            Timestamp::from_unix_micros(-5)
        );
        assert_eq!(
            serde_json::from_str::<Timestamp>("\"1970-01-01T00:00:01.5Z\"").unwrap(),
            Timestamp::from_unix_micros(1_500_000)
        );
        // Borrowed, escaped (owned) and buffered inputs all parse.
        assert_eq!(
            serde_json::from_str::<Timestamp>("\"1970-01-01T00:00:01\\u005a\"").unwrap(),
            Timestamp::from_unix_secs(1)
        );
        let v = serde_json::json!({"at": "1970-01-01T00:00:02Z"});
        #[derive(Deserialize)]
        struct At {
            at: Timestamp,
        }
        assert_eq!(
            serde_json::from_value::<At>(v).unwrap().at,
            Timestamp::from_unix_secs(2)
        );
        for bad in [
            "\"yesterday\"",
            "1.5",
            "true",
            "null",
            "[1]",
            "{}",
            "9223372036854775808",
        ] {
            assert!(
                serde_json::from_str::<Timestamp>(bad).is_err(),
                "{bad} was accepted"
            );
        }
        let e = serde_json::from_str::<Timestamp>("\"yesterday\"").unwrap_err();
        assert!(e.to_string().contains("RFC 3339"), "{e}");
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::new(Timestamp::from_unix_secs(10));
        let c2 = c.clone();
        c.advance(Duration::from_millis(1500));
        assert_eq!(c2.now().unix_micros(), 11_500_000);
        assert_eq!(
            c.now().since(Timestamp::from_unix_secs(10)),
            Duration::from_millis(1500)
        );
    }
}
