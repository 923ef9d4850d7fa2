//! The marketplace index: the keys under which a marketplace agent and its
//! publisher are found by the directory query kinds of
//! [`MarketplaceQuery`] (the kinds agntcy/dir offers), shared by every
//! backend so that all of them answer alike.
//!
//! A key is `<kind>:<value>` ([`IndexKind`]). An agent has keys only while
//! the marketplace shows it ([`Agent::is_in_marketplace`]):
//!
//! | kind | values | case |
//! |---|---|---|
//! | `agent` | its id | lowercased |
//! | `name`, `version` | its name, its version | lowercased |
//! | `capability`, `tag`, `category` | each capability, tag, its category | as stored |
//! | `publisher` | its tenant id | as stored |
//! | `skill_id`, `skill_name` | the OASF skill of each capability ([`crate::oasf`]) | lowercased |
//! | `domain` | the OASF domain of its category, by name and by id | lowercased |
//! | `locator` | the paths of its OASF record's locators ([`locator_paths`]) | lowercased |
//! | `annotation` | `key=value` of each annotation from the agent ([`oasf::agent_annotations`]) | lowercased |
//!
//! A publisher (tenant) has keys of its own, kept apart because they change
//! with the tenant, not with its agents:
//!
//! | kind | values |
//! |---|---|
//! | `author` | its display name and its slug, lowercased |
//! | `verified` | `true` or `false` |
//! | `annotation` | `key=value` of [`oasf::publisher_annotations`], lowercased |
//!
//! A query turns into one [`KeyMatch`] per filter ([`MarketplaceQuery::index_plan`]):
//! an exact key, or a key prefix when the value ends with `*`. An agent
//! matches when, for every filter, one of its keys (or its publisher's)
//! matches. Backends look the keys up in an index (sled: ordered trees;
//! Postgres: a `text[]` column with a GIN index and a key table), and
//! re-check candidates with [`MarketplaceQuery::matches_listing`].
//!
//! ```
//! use sentryagent_core::MarketplaceQuery;
//! use sentryagent_core::marketplace_index::KeyMatch;
//! let q = MarketplaceQuery { name: Some("Trans*".into()), verified: Some(true), ..Default::default() };
//! let plan = q.index_plan();
//! assert_eq!(plan.agent, vec![KeyMatch::Prefix("name:trans".into())]);
//! assert_eq!(plan.publisher, vec![KeyMatch::Exact("verified:true".into())]);
//! ```

use std::collections::BTreeSet;
use std::fmt;

use crate::oasf::{self, taxonomy};
use crate::{Agent, Error, MarketplaceQuery, Result, Tenant};

/// Longest value of a marketplace filter, in characters.
pub const MAX_FILTER_CHARS: usize = 200;

/// The kind of an index key (the part before `:`).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IndexKind {
    /// The agent's id.
    Agent,
    /// The agent's name.
    Name,
    /// The agent's version.
    Version,
    /// One of its capabilities.
    Capability,
    /// One of its tags.
    Tag,
    /// Its category.
    Category,
    /// Its tenant's id.
    Publisher,
    /// The OASF skill id of one of its capabilities.
    SkillId,
    /// The OASF skill name of one of its capabilities.
    SkillName,
    /// The OASF domain of its category (name or id).
    Domain,
    /// A locator path of its OASF record.
    Locator,
    /// An OASF annotation, `key=value`.
    Annotation,
    /// A publisher's display name or slug (publisher key).
    Author,
    /// Whether the publisher is verified (publisher key).
    Verified,
}

impl IndexKind {
    /// The kind's name, the prefix of its keys (before `:`).
    pub fn as_str(self) -> &'static str {
        match self {
            IndexKind::Agent => "agent",
            IndexKind::Name => "name",
            IndexKind::Version => "version",
            IndexKind::Capability => "capability",
            IndexKind::Tag => "tag",
            IndexKind::Category => "category",
            IndexKind::Publisher => "publisher",
            IndexKind::SkillId => "skill_id",
            IndexKind::SkillName => "skill_name",
            IndexKind::Domain => "domain",
            IndexKind::Locator => "locator",
            IndexKind::Annotation => "annotation",
            IndexKind::Author => "author",
            IndexKind::Verified => "verified",
        }
    }

    /// The key of `value` (taken as it is: callers normalize).
    pub fn key(self, value: &str) -> String {
        format!("{}:{value}", self.as_str())
    }

    /// The start of every key of this kind (`kind:`).
    pub fn prefix(self) -> String {
        self.key("")
    }
}

impl fmt::Display for IndexKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One filter of a query against index keys.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum KeyMatch {
    /// This key exactly.
    Exact(String),
    /// Any key starting with this.
    Prefix(String),
}

impl KeyMatch {
    /// The key, or the prefix.
    pub fn key(&self) -> &str {
        match self {
            KeyMatch::Exact(k) | KeyMatch::Prefix(k) => k,
        }
    }

    /// Whether it is a prefix.
    pub fn is_prefix(&self) -> bool {
        matches!(self, KeyMatch::Prefix(_))
    }

    /// Whether `key` matches.
    pub fn matches(&self, key: &str) -> bool {
        match self {
            KeyMatch::Exact(k) => key == k,
            KeyMatch::Prefix(p) => key.starts_with(p.as_str()),
        }
    }

    /// Whether one of `keys` matches.
    pub fn matches_any(&self, keys: &BTreeSet<String>) -> bool {
        match self {
            KeyMatch::Exact(k) => keys.contains(k),
            KeyMatch::Prefix(p) => keys
                .range::<str, _>((
                    std::ops::Bound::Included(p.as_str()),
                    std::ops::Bound::Unbounded,
                ))
                .next()
                .is_some_and(|k| k.starts_with(p.as_str())),
        }
    }
}

/// A query as index filters ([`MarketplaceQuery::index_plan`]): all must
/// match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexPlan {
    /// Filters on the agent's keys ([`agent_keys`]).
    pub agent: Vec<KeyMatch>,
    /// Filters on its publisher's keys ([`publisher_keys`]).
    pub publisher: Vec<KeyMatch>,
}

impl IndexPlan {
    /// Whether the plan filters nothing.
    pub fn is_empty(&self) -> bool {
        self.agent.is_empty() && self.publisher.is_empty()
    }
}

/// The path of an agent's marketplace entry below the issuer; its OASF
/// record's locators are the issuer followed by these paths (the entry,
/// then the signed A2A card).
pub fn locator_paths(agent_id: &str) -> [String; 2] {
    let entry = format!("/v1/marketplace/agents/{agent_id}");
    let card = format!("{entry}/agent-card.json");
    [entry, card]
}

/// The index keys of an agent (none outside the marketplace); see the
/// module docs.
pub fn agent_keys(agent: &Agent) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    if !agent.is_in_marketplace() {
        return keys;
    }
    let t = taxonomy();
    keys.insert(IndexKind::Agent.key(&agent.id.as_str().to_lowercase()));
    keys.insert(IndexKind::Name.key(&agent.name.to_lowercase()));
    keys.insert(IndexKind::Version.key(&agent.version.to_lowercase()));
    keys.insert(IndexKind::Publisher.key(agent.tenant_id.as_str()));
    for c in &agent.capabilities {
        keys.insert(IndexKind::Capability.key(c));
        if let Some(s) = t.skill_for(c) {
            keys.insert(IndexKind::SkillId.key(&s.id.to_string()));
            keys.insert(IndexKind::SkillName.key(&s.name.to_lowercase()));
        }
    }
    for tag in &agent.tags {
        keys.insert(IndexKind::Tag.key(tag));
    }
    if let Some(c) = &agent.category {
        keys.insert(IndexKind::Category.key(c));
        if let Some(d) = t.domain_for(c) {
            keys.insert(IndexKind::Domain.key(&d.name.to_lowercase()));
            keys.insert(IndexKind::Domain.key(&d.id.to_string()));
        }
    }
    for path in locator_paths(agent.id.as_str()) {
        keys.insert(IndexKind::Locator.key(&path.to_lowercase()));
    }
    for (k, v) in oasf::agent_annotations(agent) {
        keys.insert(annotation_key(&k, &v));
    }
    keys
}

/// The index keys of a publisher; see the module docs.
pub fn publisher_keys(tenant: &Tenant) -> BTreeSet<String> {
    let mut keys = BTreeSet::from([
        IndexKind::Author.key(&tenant.publisher.display_name.to_lowercase()),
        IndexKind::Author.key(&tenant.slug.to_lowercase()),
        IndexKind::Verified.key(if tenant.publisher.verified {
            "true"
        } else {
            "false"
        }),
    ]);
    for (k, v) in oasf::publisher_annotations(tenant) {
        keys.insert(annotation_key(&k, &v));
    }
    keys
}

fn annotation_key(k: &str, v: &str) -> String {
    IndexKind::Annotation.key(&format!("{}={}", k.to_lowercase(), v.to_lowercase()))
}

/// Whether an annotation with this key comes from the publisher.
fn is_publisher_annotation(key: &str) -> bool {
    key == oasf::PUBLISHER || key == oasf::PUBLISHER_VERIFIED
}

/// `value` as a match of `kind`: lowercased unless `exact_case`, a prefix
/// when it ends with `*`.
fn key_match(kind: IndexKind, value: &str, lowercase: bool) -> KeyMatch {
    let (v, prefix) = match value.strip_suffix('*') {
        Some(v) => (v, true),
        None => (value, false),
    };
    let v = if lowercase {
        v.to_lowercase()
    } else {
        v.to_owned()
    };
    if prefix {
        KeyMatch::Prefix(kind.key(&v))
    } else {
        KeyMatch::Exact(kind.key(&v))
    }
}

/// Checks one filter value: 1 to [`MAX_FILTER_CHARS`] characters, and not
/// just `*` when prefixes are allowed.
fn check_value(field: &'static str, value: &str, prefix_allowed: bool) -> Result<()> {
    let n = value.chars().count();
    if n == 0 || (prefix_allowed && value == "*") {
        return Err(Error::invalid(field, "must not be empty"));
    }
    if n > MAX_FILTER_CHARS {
        return Err(Error::invalid(
            field,
            format!("at most {MAX_FILTER_CHARS} characters"),
        ));
    }
    Ok(())
}

impl MarketplaceQuery {
    /// Checks every filter: values of 1 to [`MAX_FILTER_CHARS`] characters
    /// (`q` may be empty), `skill_id` digits, `annotation` as `key=value`
    /// with a non-empty key (the trailing `*` applies to the value).
    /// [`Error::Invalid`] names the field and the rule.
    pub fn validate(&self) -> Result<()> {
        if let Some(t) = &self.text
            && t.chars().count() > MAX_FILTER_CHARS
        {
            return Err(Error::invalid(
                "q",
                format!("at most {MAX_FILTER_CHARS} characters"),
            ));
        }
        for (field, value) in [
            ("capability", &self.capability),
            ("tag", &self.tag),
            ("category", &self.category),
        ] {
            if let Some(v) = value {
                check_value(field, v, false)?;
            }
        }
        for (field, value) in [
            ("agent", &self.agent),
            ("name", &self.name),
            ("version", &self.version),
            ("skill_id", &self.skill_id),
            ("skill_name", &self.skill_name),
            ("locator", &self.locator),
            ("domain", &self.domain),
            ("author", &self.author),
            ("annotation", &self.annotation),
        ] {
            if let Some(v) = value {
                check_value(field, v, true)?;
            }
        }
        if let Some(id) = &self.skill_id {
            let digits = id.strip_suffix('*').unwrap_or(id);
            if !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(Error::invalid(
                    "skill_id",
                    "must be an OASF skill id (digits, a trailing * for a prefix)",
                ));
            }
        }
        if let Some(a) = &self.annotation {
            match a.split_once('=') {
                Some((k, _)) if !k.is_empty() && !k.contains('*') => {}
                _ => {
                    return Err(Error::invalid(
                        "annotation",
                        "must be key=value with a non-empty key (a trailing * makes the value a prefix)",
                    ));
                }
            }
        }
        Ok(())
    }

    /// The query's filters as index keys (see the module docs). Neither
    /// `q` (matched through the word index) nor the visibility rule is part
    /// of the plan. Call [`validate`](Self::validate) first: an invalid
    /// query gives a plan that matches nothing useful.
    pub fn index_plan(&self) -> IndexPlan {
        let mut plan = self.directory_plan();
        let exact = [
            (IndexKind::Capability, &self.capability),
            (IndexKind::Tag, &self.tag),
            (IndexKind::Category, &self.category),
        ];
        for (kind, value) in exact {
            if let Some(v) = value {
                plan.agent.push(KeyMatch::Exact(kind.key(v)));
            }
        }
        if let Some(p) = &self.publisher {
            plan.agent
                .push(KeyMatch::Exact(IndexKind::Publisher.key(p.as_str())));
        }
        plan.agent.sort();
        plan.agent.dedup();
        plan
    }

    /// The plan of the directory filters only (not capability, tag,
    /// category, publisher, which the matcher checks on the agent).
    pub(crate) fn directory_plan(&self) -> IndexPlan {
        let mut plan = IndexPlan::default();
        let lowered = [
            (IndexKind::Agent, &self.agent),
            (IndexKind::Name, &self.name),
            (IndexKind::Version, &self.version),
            (IndexKind::SkillId, &self.skill_id),
            (IndexKind::SkillName, &self.skill_name),
            (IndexKind::Domain, &self.domain),
            (IndexKind::Locator, &self.locator),
        ];
        for (kind, value) in lowered {
            if let Some(v) = value {
                plan.agent.push(key_match(kind, v, true));
            }
        }
        if let Some(a) = &self.annotation {
            let m = key_match(IndexKind::Annotation, a, true);
            let key = a.split_once('=').map_or(a.as_str(), |(k, _)| k);
            if is_publisher_annotation(&key.to_lowercase()) {
                plan.publisher.push(m);
            } else {
                plan.agent.push(m);
            }
        }
        if let Some(a) = &self.author {
            plan.publisher.push(key_match(IndexKind::Author, a, true));
        }
        if let Some(v) = self.verified {
            plan.publisher
                .push(KeyMatch::Exact(IndexKind::Verified.key(if v {
                    "true"
                } else {
                    "false"
                })));
        }
        plan
    }

    /// Whether the query filters on the publisher (`author`, `verified`,
    /// publisher annotations): matching then needs the agent's tenant.
    pub fn filters_publisher(&self) -> bool {
        !self.directory_plan().publisher.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance::{sample_agent, sample_tenant};
    use crate::{LifecycleState, Visibility};

    fn listed() -> (Agent, Tenant) {
        let tenant = sample_tenant("Acme Labs");
        let mut a = sample_agent(&tenant.id, "Translator");
        a.visibility = Visibility::Public;
        a.state = LifecycleState::Listed;
        a.capabilities = vec!["agent_memory".into(), "invoices.search".into()];
        a.tags = vec!["Finance".into()];
        a.category = Some("Finance Stuff".into());
        (a, tenant)
    }

    #[test]
    fn keys_cover_the_record() {
        let (a, tenant) = listed();
        let keys = agent_keys(&a);
        let t = taxonomy();
        let skill = t.skill_for("agent_memory").unwrap();
        assert!(keys.contains(&format!("skill_id:{}", skill.id)));
        assert!(keys.contains(&format!("skill_name:{}", skill.name)));
        assert!(keys.contains("name:translator"));
        assert!(keys.contains("capability:invoices.search"));
        assert!(keys.contains("tag:Finance"));
        assert!(keys.contains("annotation:sentryagent.unmapped_capabilities=invoices.search"));
        assert!(keys.contains(&format!(
            "locator:/v1/marketplace/agents/{}",
            a.id.as_str().to_lowercase()
        )));
        // Every annotation of the record is a key of the agent or of its
        // publisher.
        let record = oasf::record(&a, &tenant, "e", "c", serde_json::json!({}));
        let pk = publisher_keys(&tenant);
        for (k, v) in &record.annotations {
            let key = annotation_key(k, v);
            assert!(keys.contains(&key) ^ pk.contains(&key), "{key}");
        }
        assert!(pk.contains("author:acme labs") && pk.contains("verified:false"));
        let mut hidden = a.clone();
        hidden.state = LifecycleState::Paused;
        assert!(agent_keys(&hidden).is_empty());
    }

    #[test]
    fn validation_names_the_rule() {
        let bad = [
            MarketplaceQuery {
                name: Some(String::new()),
                ..Default::default()
            },
            MarketplaceQuery {
                author: Some("*".into()),
                ..Default::default()
            },
            MarketplaceQuery {
                skill_id: Some("12a".into()),
                ..Default::default()
            },
            MarketplaceQuery {
                annotation: Some("novalue".into()),
                ..Default::default()
            },
            MarketplaceQuery {
                annotation: Some("sentry*=x".into()),
                ..Default::default()
            },
            MarketplaceQuery {
                version: Some("x".repeat(MAX_FILTER_CHARS + 1)),
                ..Default::default()
            },
        ];
        for q in bad {
            assert!(matches!(q.validate(), Err(Error::Invalid { .. })), "{q:?}");
        }
        let ok = MarketplaceQuery {
            skill_id: Some("708*".into()),
            annotation: Some("sentryagent.tags=fin*".into()),
            ..Default::default()
        };
        ok.validate().unwrap();
        let plan = ok.index_plan();
        assert_eq!(
            plan.agent,
            vec![
                KeyMatch::Prefix("skill_id:708".into()),
                KeyMatch::Prefix("annotation:sentryagent.tags=fin".into()),
            ]
            .into_iter()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>()
        );
        let publ = MarketplaceQuery {
            annotation: Some("Sentryagent.Publisher=acme".into()),
            ..Default::default()
        };
        assert!(publ.filters_publisher());
    }

    #[test]
    fn prefix_matches_any_key() {
        let keys: BTreeSet<String> = ["name:alpha", "name:beta"].map(String::from).into();
        assert!(KeyMatch::Prefix("name:be".into()).matches_any(&keys));
        assert!(!KeyMatch::Prefix("name:c".into()).matches_any(&keys));
        assert!(KeyMatch::Exact("name:alpha".into()).matches_any(&keys));
        assert!(!KeyMatch::Exact("name:alp".into()).matches_any(&keys));
    }
}
