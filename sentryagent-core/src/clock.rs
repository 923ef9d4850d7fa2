//! Time, injected: every expiry, window, grace period and rate limit reads a
//! [`Clock`], so tests use a [`ManualClock`] and never sleep.

use std::cell::Cell;
use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, OnceLock};
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

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for Timestamp {
    /// An RFC 3339 string: every timestamp the API produces lies within
    /// the years 0 to 9999.
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
            .description(Some("RFC 3339 time, UTC, microseconds"))
            .examples(["2026-11-22T10:00:00.123456Z"])
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for Timestamp {}

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

/// The system's wall clock, read cheaply.
///
/// Every token request reads the clock several times (the rate limits, the
/// token's `iat` and `exp`, usage buckets), and `SystemTime::now()` costs 20
/// to 40 ns on common virtual machines: as much as a whole in-memory rate
/// limit check. So each thread anchors the wall clock to the CPU's counter
/// (the invariant TSC on x86-64, `CNTVCT_EL0` on AArch64, through the
/// `quanta` crate; the monotonic clock where neither is usable) and reads
/// the wall clock as *anchor + counter ticks since*, which costs a counter
/// read and a multiplication.
///
/// The anchor is taken again from `SystemTime::now()` every
/// [`REANCHOR_INTERVAL`](Self::REANCHOR_INTERVAL) (100 ms), and at once if
/// the counter reads lower than at the anchor (a thread moved to a core
/// whose counter differs). So the time read follows the system clock's
/// steps (NTP, an operator's `date`) within 100 ms, and between anchors it
/// differs from `SystemTime::now()` by the counter's calibration error times
/// the time since the anchor: a few microseconds at most (the `rate_limiter`
/// bench prints the largest difference it sees), far below the precision
/// anything here needs (tokens count in seconds, rate limits in
/// microseconds of a period of at least a millisecond). Like
/// `SystemTime::now()`, it is not monotonic: a new anchor may read a few
/// microseconds earlier than the last extrapolation.
///
/// [`SystemClock::precise_now`] reads `SystemTime::now()` directly.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl SystemClock {
    /// How long a thread extrapolates from one anchor before reading the
    /// system clock again.
    pub const REANCHOR_INTERVAL: Duration = Duration::from_millis(100);

    /// The system clock read directly (`SystemTime::now()`), without the
    /// counter extrapolation of [`Clock::now`].
    pub fn precise_now() -> Timestamp {
        let micros = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
            // Before 1970: negative microseconds.
            .unwrap_or_else(|e| i64::try_from(e.duration().as_micros()).map_or(i64::MIN, |m| -m));
        Timestamp(micros)
    }
}

impl Clock for SystemClock {
    #[inline]
    fn now(&self) -> Timestamp {
        let counter = COUNTER.get_or_init(quanta::Clock::new);
        // `try_with` cannot fail for a thread local without a destructor;
        // the direct read is there for form's sake.
        ANCHOR
            .try_with(|cell| {
                let raw = counter.raw();
                if let Some(a) = cell.get()
                    && raw >= a.raw
                {
                    let nanos = counter.delta_as_nanos(a.raw, raw);
                    if nanos < REANCHOR_NANOS {
                        // < 10^5 µs: no overflow.
                        return Timestamp(a.wall.0.saturating_add((nanos / 1000) as i64));
                    }
                }
                let a = Anchor::take(counter);
                cell.set(Some(a));
                a.wall
            })
            .unwrap_or_else(|_| Self::precise_now())
    }
}

/// The counter every thread reads (calibrated once per process, in a few
/// milliseconds at most).
static COUNTER: OnceLock<quanta::Clock> = OnceLock::new();

/// One thread's anchor of the wall clock to the counter.
#[derive(Debug, Clone, Copy)]
struct Anchor {
    /// The counter's raw reading at the anchor.
    raw: u64,
    /// The wall clock at the anchor.
    wall: Timestamp,
}

/// [`SystemClock::REANCHOR_INTERVAL`] in nanoseconds.
const REANCHOR_NANOS: u64 = 100_000_000;
const _: () = assert!(SystemClock::REANCHOR_INTERVAL.as_nanos() == REANCHOR_NANOS as u128);

impl Anchor {
    fn take(counter: &quanta::Clock) -> Anchor {
        // The wall clock between two counter reads: the anchor is their
        // middle.
        let before = counter.raw();
        let wall = SystemClock::precise_now();
        let after = counter.raw();
        let raw = before.wrapping_add(after.wrapping_sub(before) / 2);
        Anchor { raw, wall }
    }
}

thread_local! {
    // Plain data, no destructor: reading it is one thread-pointer-relative
    // load.
    static ANCHOR: Cell<Option<Anchor>> = const { Cell::new(None) };
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

/// A clock that never goes back: the largest time read so far from the
/// clock it wraps.
///
/// A backward step of the wrapped clock (NTP correcting a fast clock, an
/// operator's `date`) reads as time standing still until the wrapped clock
/// catches up, so a token that expired does not become valid again, a
/// rate limit grants no capacity back, and usage buckets do not return to
/// an earlier hour. A forward step is followed at once. `sentryagentd` reads
/// the system clock through it; each process has its own high-water mark,
/// so nodes still rely on their clocks being synchronized (NTP) with each
/// other.
#[derive(Debug)]
pub struct MonotonicClock<C: Clock> {
    inner: C,
    high: AtomicI64,
}

impl<C: Clock> MonotonicClock<C> {
    /// Wraps `inner`.
    pub fn new(inner: C) -> Self {
        MonotonicClock {
            high: AtomicI64::new(inner.now().0),
            inner,
        }
    }
}

impl<C: Clock> Clock for MonotonicClock<C> {
    #[inline]
    fn now(&self) -> Timestamp {
        let now = self.inner.now().0;
        // Most reads move forward: one load, then a store only when later.
        let high = self.high.load(Ordering::Relaxed);
        if now <= high {
            return Timestamp(high);
        }
        let prev = self.high.fetch_max(now, Ordering::Relaxed);
        Timestamp(prev.max(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_monotonic_clock_stands_still_through_a_backward_step() {
        let manual = ManualClock::new(Timestamp::from_unix_secs(1_000));
        let clock = MonotonicClock::new(manual.clone());
        manual.advance(Duration::from_secs(10));
        assert_eq!(clock.now(), Timestamp::from_unix_secs(1_010));
        manual.set(Timestamp::from_unix_secs(900));
        assert_eq!(
            clock.now(),
            Timestamp::from_unix_secs(1_010),
            "no step back"
        );
        manual.set(Timestamp::from_unix_secs(1_005));
        assert_eq!(clock.now(), Timestamp::from_unix_secs(1_010));
        manual.set(Timestamp::from_unix_secs(1_011));
        assert_eq!(
            clock.now(),
            Timestamp::from_unix_secs(1_011),
            "forward at once"
        );
    }

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

    /// `SystemClock::now()` lies between two direct reads of the system
    /// clock around it, give or take the counter's calibration error (a
    /// millisecond is far more than it can be over one anchor interval).
    fn assert_between_precise_reads(reads: usize) {
        let slack = Duration::from_millis(1);
        for _ in 0..reads {
            let before = SystemClock::precise_now();
            let now = SystemClock.now();
            let after = SystemClock::precise_now();
            assert!(
                before.minus(slack) <= now && now <= after.plus(slack),
                "{before:?} <= {now:?} <= {after:?}"
            );
        }
    }

    #[test]
    fn system_clock_follows_the_system_time() {
        // A fresh anchor, reads within one interval, reads after new
        // anchors, and on other threads (each with its own anchor).
        assert_between_precise_reads(10_000);
        std::thread::sleep(SystemClock::REANCHOR_INTERVAL + Duration::from_millis(20));
        assert_between_precise_reads(10_000);
        let threads: Vec<_> = (0..3)
            .map(|_| {
                std::thread::spawn(|| {
                    assert_between_precise_reads(1_000);
                    std::thread::sleep(Duration::from_millis(30));
                    assert_between_precise_reads(1_000);
                })
            })
            .collect();
        for t in threads {
            t.join().expect("no thread panicked");
        }
    }

    #[test]
    fn system_clock_moves_between_anchors() {
        let start = SystemClock.now();
        std::thread::sleep(Duration::from_millis(5));
        let later = SystemClock.now();
        assert!(
            later.since(start) >= Duration::from_millis(4),
            "{start:?} then {later:?}"
        );
        assert!(SystemClock::precise_now().unix_secs() > 1_700_000_000);
    }
}
