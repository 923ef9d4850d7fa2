//! Small formatting shared by the dashboard pages.

use sentryagent_core::{SubscriptionStatus, Tier, Timestamp};

/// `1234567` as `1,234,567`.
pub(crate) fn number(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A tier's name as people read it.
pub(crate) fn tier_name(t: Tier) -> &'static str {
    match t {
        Tier::Free => "Free",
        Tier::Pro => "Pro",
        Tier::Enterprise => "Enterprise",
    }
}

/// A subscription status as people read it.
pub(crate) fn status_name(s: SubscriptionStatus) -> &'static str {
    match s {
        SubscriptionStatus::Active => "Active",
        SubscriptionStatus::Trialing => "Trial",
        SubscriptionStatus::PastDue => "Past due",
        SubscriptionStatus::Canceled => "Cancelled",
        SubscriptionStatus::Unpaid => "Unpaid",
        SubscriptionStatus::Incomplete => "Incomplete",
        _ => "Unknown",
    }
}

/// A date as `YYYY-MM-DD` (UTC).
pub(crate) fn date(t: Timestamp) -> String {
    t.utc_day()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_get_thousands_separators() {
        assert_eq!(number(0), "0");
        assert_eq!(number(999), "999");
        assert_eq!(number(1000), "1,000");
        assert_eq!(number(1_234_567), "1,234,567");
    }
}
