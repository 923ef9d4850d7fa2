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

use sentryagent_core::agent::agent_search_terms;
use sentryagent_core::{Agent, MarketplaceQuery};

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

/// The `tsquery` text of a query: every word as a prefix, all required;
/// `None` when the query has no words.
pub(crate) fn tsquery(query: &MarketplaceQuery) -> Option<String> {
    let mut terms: Vec<String> = query.terms().iter().map(|t| cut(t).to_owned()).collect();
    terms.sort();
    terms.dedup();
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
    fn long_words_are_cut_at_a_char_boundary() {
        let w = "é".repeat(2000);
        let c = cut(&w);
        assert!(c.len() <= MAX_LEXEME_BYTES);
        assert_eq!(c.len(), 2046);
        assert!(w.starts_with(c));
        assert_eq!(cut("short"), "short");
    }
}
