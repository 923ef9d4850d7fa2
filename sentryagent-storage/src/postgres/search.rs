//! Marketplace full-text search: the agent's words as a `tsvector`, the
//! query's words as a prefix `tsquery`.
//!
//! The meaning is [`MarketplaceQuery::matches`]: every query word (the
//! lowercase alphanumeric runs of the text) is a prefix of some word of the
//! agent's name, description, capabilities or tags. Postgres' own text
//! parser splits and normalizes words differently (hyphenated words, host
//! names, numbers), so neither side goes through it: the agent's words,
//! computed in Rust with [`agent_search_terms`], become the lexemes of
//! `array_to_tsvector`, and each query word becomes a quoted prefix operand
//! (`'word':*`) of a `tsquery` cast from text. Quoted operands hold only
//! alphanumeric characters, so nothing in the query text can change the
//! query's structure.
//!
//! A lexeme holds at most 2047 bytes; longer words (and query words) are cut
//! to their first 2047 bytes at a character boundary on both sides. The
//! cut can only widen what the index finds, never narrow it, and the store
//! re-checks every candidate with [`MarketplaceQuery::matches`], so results
//! are exact.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::Row;

use sentryagent_core::agent::agent_search_terms;
use sentryagent_core::{Agent, MarketplaceQuery};

use super::db::Db;

/// How long lexeme frequencies read from the statistics are used.
const STATS_TTL: Duration = Duration::from_secs(60);

/// Query words shorter than this are never taken for rare: a short prefix
/// may match many lexemes, each below the statistics' cut.
const RARE_MIN_CHARS: usize = 3;

/// Longest lexeme Postgres stores, in bytes.
const MAX_LEXEME_BYTES: usize = 2047;

fn cut(word: &str) -> &str {
    if word.len() <= MAX_LEXEME_BYTES {
        return word;
    }
    let mut end = MAX_LEXEME_BYTES;
    while !word.is_char_boundary(end) {
        end -= 1;
    }
    &word[..end]
}

/// The lexemes of an agent, for `array_to_tsvector`.
pub(crate) fn lexemes(agent: &Agent) -> Vec<String> {
    let mut words: Vec<String> = agent_search_terms(agent)
        .iter()
        .map(|w| cut(w).to_owned())
        .collect();
    words.sort();
    words.dedup();
    words
}

/// The words of a query, cut, sorted, deduplicated.
pub(crate) fn terms(query: &MarketplaceQuery) -> Vec<String> {
    let mut terms: Vec<String> = query.terms().iter().map(|t| cut(t).to_owned()).collect();
    terms.sort();
    terms.dedup();
    terms
}

/// The `tsquery` text of a query: every word as a prefix, all required;
/// `None` when the query has no words.
#[cfg(test)]
pub(crate) fn tsquery(query: &MarketplaceQuery) -> Option<String> {
    tsquery_of(&terms(query))
}

/// The `tsquery` text of `terms`: every word as a prefix, all required;
/// `None` when there are none.
pub(crate) fn tsquery_of(terms: &[String]) -> Option<String> {
    if terms.is_empty() {
        return None;
    }
    let operands: Vec<String> = terms
        .iter()
        // `terms()` yields alphanumeric words only; the filter keeps that
        // true whatever it may yield one day.
        .filter(|t| !t.is_empty() && t.chars().all(char::is_alphanumeric))
        .map(|t| format!("'{t}':*"))
        .collect();
    if operands.is_empty() {
        return None;
    }
    Some(operands.join(" & "))
}

/// Lexeme frequencies of `agents.search` from the planner's statistics
/// (`pg_stats.most_common_elems`, sorted), and the table's row count.
#[derive(Debug, Default)]
pub(crate) struct Lexemes {
    words: Vec<(String, f64)>,
    rows: f64,
}

impl Lexemes {
    /// Agents the statistics count for words starting with `prefix`: the
    /// sum over the most common lexemes; lexemes below the statistics'
    /// cut are not counted.
    pub(crate) fn estimate(&self, prefix: &str) -> f64 {
        let from = self.words.partition_point(|(w, _)| w.as_str() < prefix);
        self.words[from..]
            .iter()
            .take_while(|(w, _)| w.starts_with(prefix))
            .map(|(_, f)| f * self.rows)
            .sum()
    }

    /// Whether statistics were found.
    pub(crate) fn known(&self) -> bool {
        !self.words.is_empty() && self.rows > 0.0
    }

    /// The query words that are rare: at least [`RARE_MIN_CHARS`] long
    /// and, by the statistics, on at most `most` agents. Empty without
    /// statistics (a table never analyzed).
    pub(crate) fn rare(&self, terms: &[String], most: f64) -> Vec<String> {
        if !self.known() {
            return Vec::new();
        }
        terms
            .iter()
            .filter(|t| t.chars().count() >= RARE_MIN_CHARS && self.estimate(t) <= most)
            .cloned()
            .collect()
    }
}

/// [`Lexemes`] read at most once per [`STATS_TTL`].
#[derive(Debug, Default)]
pub(crate) struct LexemeStats {
    cached: Mutex<Option<(Instant, Arc<Lexemes>)>>,
}

impl LexemeStats {
    /// The current frequencies; empty ones when they cannot be read.
    pub(crate) async fn get(&self, db: &Db) -> Arc<Lexemes> {
        if let Ok(guard) = self.cached.lock()
            && let Some((at, l)) = guard.as_ref()
            && at.elapsed() < STATS_TTL
        {
            return l.clone();
        }
        let read = sqlx::query(
            "SELECT s.most_common_elems::text::text[] AS words, \
             s.most_common_elem_freqs::float8[] AS freqs, \
             (SELECT c.reltuples::float8 FROM pg_class c \
              WHERE c.oid = to_regclass(quote_ident(current_schema()) || '.agents')) AS rows \
             FROM pg_stats s WHERE s.schemaname = current_schema() \
             AND s.tablename = 'agents' AND s.attname = 'search'",
        )
        .fetch_optional(&db.pool)
        .await;
        let lexemes = match read {
            Ok(Some(r)) => {
                let words: Option<Vec<String>> = r.try_get("words").unwrap_or_default();
                let freqs: Option<Vec<f64>> = r.try_get("freqs").unwrap_or_default();
                let rows: Option<f64> = r.try_get("rows").unwrap_or_default();
                let mut words: Vec<(String, f64)> = words
                    .unwrap_or_default()
                    .into_iter()
                    .zip(freqs.unwrap_or_default())
                    .collect();
                words.sort_by(|a, b| a.0.cmp(&b.0));
                Lexemes {
                    words,
                    rows: rows.unwrap_or_default(),
                }
            }
            // No statistics yet, or an error: the next search asks again
            // after the TTL; the search itself reports database errors.
            Ok(None) | Err(_) => Lexemes::default(),
        };
        let lexemes = Arc::new(lexemes);
        if let Ok(mut guard) = self.cached.lock() {
            *guard = Some((Instant::now(), lexemes.clone()));
        }
        lexemes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_words_become_quoted_prefixes() {
        let q = MarketplaceQuery {
            text: Some("Invoice, ÉTÉ' & !x | y:* (z)".into()),
            ..Default::default()
        };
        assert_eq!(
            tsquery(&q).unwrap(),
            "'invoice':* & 'x':* & 'y':* & 'z':* & 'été':*"
        );
        let none = MarketplaceQuery {
            text: Some(" -- '' ".into()),
            ..Default::default()
        };
        assert_eq!(tsquery(&none), None);
        assert_eq!(tsquery(&MarketplaceQuery::default()), None);
    }

    #[test]
    fn rare_words_are_those_the_statistics_count_few_of() {
        let l = Lexemes {
            words: vec![
                ("inbox".into(), 0.01),
                ("invoice".into(), 0.2),
                ("invoices".into(), 0.05),
                ("ledger".into(), 0.2),
            ],
            rows: 1000.0,
        };
        assert!((l.estimate("invoice") - 250.0).abs() < 1e-9);
        assert!((l.estimate("in") - 260.0).abs() < 1e-9);
        assert!(l.estimate("hexdraca").abs() < 1e-9);
        let terms = ["hexdraca", "in", "inbox", "invoice", "zz"].map(String::from);
        assert_eq!(l.rare(&terms, 20.0), ["hexdraca", "inbox"]);
        assert!(Lexemes::default().rare(&terms, 20.0).is_empty());
    }

    #[test]
    fn long_words_are_cut_at_a_char_boundary() {
        let w = "é".repeat(2000);
        let c = cut(&w);
        assert!(c.len() <= MAX_LEXEME_BYTES);
        assert_eq!(c.len(), 2046);
        assert!(w.starts_with(c));
        assert_eq!(cut("short"), "short");
    }
}
