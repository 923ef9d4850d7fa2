//! Agents: the registered AI agents, their lifecycle and their public key.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{AgentId, Error, Result, TenantId, Timestamp};

/// Where an agent is in its life.
///
/// Transitions (anything else is [`Error::Conflict`]):
///
/// | from     | to                                   |
/// |----------|--------------------------------------|
/// | draft    | deployed, active, retired            |
/// | deployed | listed, active, paused, retired      |
/// | listed   | deployed, active, paused, retired    |
/// | active   | deployed, listed, paused, retired    |
/// | paused   | deployed, listed, active, retired    |
/// | retired  | (none: retirement is final)          |
///
/// Tokens are issued only in `deployed`, `listed` and `active`. The
/// marketplace shows public agents in `listed` or `active`.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum LifecycleState {
    /// Being prepared; no tokens.
    Draft,
    /// Running, not advertised.
    Deployed,
    /// Running and advertised in the marketplace.
    Listed,
    /// Running (the default state of a new agent).
    Active,
    /// Temporarily stopped; no tokens.
    Paused,
    /// Permanently stopped; no tokens, no way back.
    Retired,
}

impl LifecycleState {
    /// All states.
    pub const ALL: [LifecycleState; 6] = [
        LifecycleState::Draft,
        LifecycleState::Deployed,
        LifecycleState::Listed,
        LifecycleState::Active,
        LifecycleState::Paused,
        LifecycleState::Retired,
    ];

    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            LifecycleState::Draft => "draft",
            LifecycleState::Deployed => "deployed",
            LifecycleState::Listed => "listed",
            LifecycleState::Active => "active",
            LifecycleState::Paused => "paused",
            LifecycleState::Retired => "retired",
        }
    }

    /// Whether the table above allows `self -> to`.
    pub fn can_transition_to(self, to: LifecycleState) -> bool {
        use LifecycleState::*;
        match self {
            Draft => matches!(to, Deployed | Active | Retired),
            Deployed => matches!(to, Listed | Active | Paused | Retired),
            Listed => matches!(to, Deployed | Active | Paused | Retired),
            Active => matches!(to, Deployed | Listed | Paused | Retired),
            Paused => matches!(to, Deployed | Listed | Active | Retired),
            Retired => false,
        }
    }

    /// Whether an agent in this state may receive tokens.
    pub fn bears_tokens(self) -> bool {
        matches!(
            self,
            LifecycleState::Deployed | LifecycleState::Listed | LifecycleState::Active
        )
    }

    /// Whether a public agent in this state appears in the marketplace.
    pub fn is_listed(self) -> bool {
        matches!(self, LifecycleState::Listed | LifecycleState::Active)
    }
}

/// How many agents are in each lifecycle state (every tenant together):
/// what [`AgentStore::agents_by_state`](crate::AgentStore::agents_by_state)
/// and [`Idp::agents_by_state`](crate::Idp::agents_by_state) return. Every
/// state is present, with zero when no agent is in it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AgentStateCounts {
    counts: [u64; LifecycleState::ALL.len()],
}

impl AgentStateCounts {
    fn slot(state: LifecycleState) -> usize {
        LifecycleState::ALL
            .iter()
            .position(|s| *s == state)
            .unwrap_or_default()
    }

    /// Agents in `state`.
    pub fn get(&self, state: LifecycleState) -> u64 {
        self.counts[Self::slot(state)]
    }

    /// Adds `n` agents in `state`.
    pub fn add(&mut self, state: LifecycleState, n: u64) {
        let c = &mut self.counts[Self::slot(state)];
        *c = c.saturating_add(n);
    }

    /// Every state with its count, in [`LifecycleState::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (LifecycleState, u64)> + '_ {
        LifecycleState::ALL.into_iter().zip(self.counts)
    }

    /// Agents in any state.
    pub fn total(&self) -> u64 {
        self.counts.iter().fold(0, |a, n| a.saturating_add(*n))
    }
}

impl FromIterator<LifecycleState> for AgentStateCounts {
    /// Counts the states of agents, one item per agent.
    fn from_iter<I: IntoIterator<Item = LifecycleState>>(states: I) -> Self {
        let mut c = AgentStateCounts::default();
        for s in states {
            c.add(s, 1);
        }
        c
    }
}

impl fmt::Display for LifecycleState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for LifecycleState {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        LifecycleState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                Error::invalid(
                    "state",
                    "expected draft, deployed, listed, active, paused or retired",
                )
            })
    }
}

/// Who may see an agent outside its tenant.
///
/// Closed on purpose: an agent is listed publicly or not;
/// finer sharing would be a new field, not a new variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    /// Only its tenant.
    #[default]
    Private,
    /// Everyone, through the marketplace, when listed or active.
    Public,
}

/// A registered agent. Holds no secret: the private key, if generated, was
/// returned once at registration; client secrets live hashed beside it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Agent {
    /// Id, also the OAuth `client_id`.
    pub id: AgentId,
    /// Owning tenant.
    pub tenant_id: TenantId,
    /// Name, unique within the tenant.
    pub name: String,
    /// Description.
    pub description: String,
    /// Version string of the agent software.
    pub version: String,
    /// Capabilities it offers (marketplace skills).
    pub capabilities: Vec<String>,
    /// Free tags.
    pub tags: Vec<String>,
    /// Category.
    pub category: Option<String>,
    /// Visibility.
    pub visibility: Visibility,
    /// Lifecycle state.
    pub state: LifecycleState,
    /// The agent's `did:key` (Ed25519).
    pub did: String,
    /// Scopes the agent may request.
    pub allowed_scopes: Vec<String>,
    /// Extra claims added to its access tokens.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub custom_claims: serde_json::Map<String, serde_json::Value>,
    /// Algorithm of its access tokens; `None` means the deployment's default
    /// (the first of [`IdpConfig::algorithms`](crate::IdpConfig::algorithms)).
    /// `ES256` serves relying parties that cannot verify EdDSA.
    #[serde(default)]
    pub token_algorithm: Option<crate::jose::Algorithm>,
    /// Access tokens of this agent issued at or before this instant (to the
    /// second of their `iat`) are no longer active: set when its client
    /// secrets are revoked and when it leaves a token-bearing state, so that
    /// neither brings back tokens issued earlier. Offline verifiers see
    /// such tokens until their `exp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_not_before: Option<Timestamp>,
    /// When `state` last changed (its creation for an agent that never
    /// moved); `None` only for agents stored before this field existed.
    #[serde(default)]
    pub state_changed_at: Option<Timestamp>,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
    /// Incremented by every stored change (optimistic concurrency).
    pub revision: u64,
}

impl Agent {
    /// Whether an access token issued at `iat` (seconds) was ended by
    /// [`tokens_not_before`](Agent::tokens_not_before).
    pub fn ended_token(&self, iat: i64) -> bool {
        self.tokens_not_before.is_some_and(|t| iat <= t.unix_secs())
    }

    /// The agent's Ed25519 public key, decoded from its DID.
    pub fn public_key(&self) -> Result<[u8; 32]> {
        Ok(crate::did::ed25519_from_did_key(&self.did)?)
    }

    /// Whether the marketplace shows it.
    pub fn is_in_marketplace(&self) -> bool {
        self.visibility == Visibility::Public && self.state.is_listed()
    }
}

/// The marketplace query (public agents, listed or active).
///
/// Every filter given must match (AND). The directory filters (`agent`
/// to `annotation`) compare without regard to case, exactly, or as a prefix
/// when the value ends with `*`; they match the agent's OASF record
/// ([`crate::oasf::record`]) through the keys of
/// [`crate::marketplace_index`]. [`validate`](Self::validate) refuses
/// empty, too long or malformed values.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarketplaceQuery {
    /// Words matched (case-insensitively, all of them) against name,
    /// description, capabilities and tags.
    pub text: Option<String>,
    /// Must offer this capability (exact).
    pub capability: Option<String>,
    /// Must carry this tag (exact).
    pub tag: Option<String>,
    /// Must be in this category (exact).
    pub category: Option<String>,
    /// Must be published by this tenant.
    pub publisher: Option<TenantId>,
    /// The agent's id.
    #[serde(default)]
    pub agent: Option<String>,
    /// The agent's name.
    #[serde(default)]
    pub name: Option<String>,
    /// The agent's version.
    #[serde(default)]
    pub version: Option<String>,
    /// The id of an OASF skill of one of its capabilities (digits).
    #[serde(default)]
    pub skill_id: Option<String>,
    /// The name of an OASF skill of one of its capabilities
    /// (`ai_ml_engineering/agent_development/agent_memory`).
    #[serde(default)]
    pub skill_name: Option<String>,
    /// A locator of its OASF record, as a path below the issuer
    /// (`/v1/marketplace/agents/<id>`, or that followed by
    /// `/agent-card.json`); [`Idp::search_marketplace`](crate::Idp::search_marketplace)
    /// also takes absolute URLs under its issuer.
    #[serde(default)]
    pub locator: Option<String>,
    /// The OASF domain of its category, by name or id.
    #[serde(default)]
    pub domain: Option<String>,
    /// The publisher's display name or slug.
    #[serde(default)]
    pub author: Option<String>,
    /// `Some(true)`: verified publishers only; `Some(false)`: unverified
    /// ones only.
    #[serde(default)]
    pub verified: Option<bool>,
    /// An annotation of its OASF record, `key=value` (a trailing `*` makes
    /// the value a prefix).
    #[serde(default)]
    pub annotation: Option<String>,
}

impl MarketplaceQuery {
    /// The lowercase words of `text`.
    pub fn terms(&self) -> Vec<String> {
        search_terms(self.text.as_deref().unwrap_or(""))
    }

    /// Whether `agent` matches (used by backends that filter in process),
    /// for a query without publisher filters (`author`, `verified`,
    /// publisher annotations): with them, use
    /// [`matches_listing`](Self::matches_listing). To test many agents,
    /// prepare the query once with [`matcher`](Self::matcher).
    pub fn matches(&self, agent: &Agent) -> bool {
        self.matcher().matches(agent)
    }

    /// Whether `agent`, published by `tenant`, matches. Without the tenant
    /// (`None`), a query with publisher filters matches nothing.
    pub fn matches_listing(&self, agent: &Agent, tenant: Option<&crate::Tenant>) -> bool {
        self.matcher().matches_listing(agent, tenant)
    }

    /// The query prepared for testing many agents: its words split and
    /// lowercased once, its directory filters turned into index keys.
    pub fn matcher(&self) -> MarketplaceMatcher<'_> {
        MarketplaceMatcher {
            query: self,
            terms: self.terms(),
            directory: self.directory_plan(),
        }
    }
}

/// A [`MarketplaceQuery`] prepared for testing many agents
/// ([`MarketplaceQuery::matcher`]).
#[derive(Debug, Clone)]
pub struct MarketplaceMatcher<'a> {
    query: &'a MarketplaceQuery,
    terms: Vec<String>,
    directory: crate::marketplace_index::IndexPlan,
}

impl MarketplaceMatcher<'_> {
    /// Whether `agent` matches: the same answer as
    /// [`MarketplaceQuery::matches`], without allocating for ASCII words.
    pub fn matches(&self, agent: &Agent) -> bool {
        self.matches_listing(agent, None)
    }

    /// Whether the query filters on the publisher (then
    /// [`matches_listing`](Self::matches_listing) needs the tenant).
    pub fn filters_publisher(&self) -> bool {
        !self.directory.publisher.is_empty()
    }

    /// Whether `agent`, published by `tenant`, matches: the same answer as
    /// [`MarketplaceQuery::matches_listing`].
    pub fn matches_listing(&self, agent: &Agent, tenant: Option<&crate::Tenant>) -> bool {
        if !self.matches_agent(agent) {
            return false;
        }
        if !self.directory.agent.is_empty() {
            let keys = crate::marketplace_index::agent_keys(agent);
            if !self.directory.agent.iter().all(|m| m.matches_any(&keys)) {
                return false;
            }
        }
        if !self.directory.publisher.is_empty() {
            let Some(tenant) = tenant.filter(|t| t.id == agent.tenant_id) else {
                return false;
            };
            let keys = crate::marketplace_index::publisher_keys(tenant);
            if !self
                .directory
                .publisher
                .iter()
                .all(|m| m.matches_any(&keys))
            {
                return false;
            }
        }
        true
    }

    fn matches_agent(&self, agent: &Agent) -> bool {
        let q = self.query;
        if !agent.is_in_marketplace() {
            return false;
        }
        if let Some(c) = &q.capability
            && !agent.capabilities.iter().any(|x| x == c)
        {
            return false;
        }
        if let Some(t) = &q.tag
            && !agent.tags.iter().any(|x| x == t)
        {
            return false;
        }
        if let Some(c) = &q.category
            && agent.category.as_ref() != Some(c)
        {
            return false;
        }
        if let Some(p) = &q.publisher
            && &agent.tenant_id != p
        {
            return false;
        }
        self.terms.iter().all(|t| has_word_starting_with(agent, t))
    }
}

/// Whether one of the agent's searchable words ([`agent_search_terms`])
/// starts with `term` (a lowercase word of [`search_terms`]).
fn has_word_starting_with(agent: &Agent, term: &str) -> bool {
    let fields = [agent.name.as_str(), agent.description.as_str()]
        .into_iter()
        .chain(agent.capabilities.iter().map(String::as_str))
        .chain(agent.tags.iter().map(String::as_str));
    for text in fields {
        let mut words = text
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty());
        if words.any(|w| word_starts_with(w, term)) {
            return true;
        }
    }
    false
}

/// `word.to_lowercase().starts_with(term)`, without the allocation when
/// both are ASCII (`term` is lowercase already).
fn word_starts_with(word: &str, term: &str) -> bool {
    if word.is_ascii() && term.is_ascii() {
        word.len() >= term.len()
            && word.as_bytes()[..term.len()].eq_ignore_ascii_case(term.as_bytes())
    } else {
        word.to_lowercase().starts_with(term)
    }
}

/// Splits text into lowercase alphanumeric words (the marketplace's tokens).
pub fn search_terms(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| w.to_lowercase())
        .collect()
}

/// Every searchable word of an agent: name, description, capabilities, tags.
pub fn agent_search_terms(agent: &Agent) -> Vec<String> {
    let mut words = search_terms(&agent.name);
    words.extend(search_terms(&agent.description));
    for c in agent.capabilities.iter().chain(agent.tags.iter()) {
        words.extend(search_terms(c));
    }
    words.sort();
    words.dedup();
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The matching of words as it was first written: every word of the
    /// agent lowercased into a list, then a prefix test.
    fn reference_terms_match(agent: &Agent, query: &MarketplaceQuery) -> bool {
        let words = agent_search_terms(agent);
        query
            .terms()
            .iter()
            .all(|t| words.iter().any(|w| w.starts_with(t.as_str())))
    }

    proptest::proptest! {
        #[test]
        fn the_matcher_matches_words_as_the_reference_does(
            name in "[a-zA-Z0-9 _.İıßǅΣσς-]{0,12}",
            description in "[a-zA-Z0-9 ,İıßǅΣσςÅå-]{0,24}",
            capability in "[a-zA-Z.İß]{0,8}",
            text in "[a-zA-Z0-9 İıßǅΣσςå]{0,8}",
        ) {
            let at = crate::Timestamp::from_unix_secs(0);
            let agent = Agent {
                id: AgentId::generate(),
                tenant_id: TenantId::generate(),
                name,
                description,
                version: "1".into(),
                capabilities: vec![capability],
                tags: vec!["Tag".into()],
                category: None,
                visibility: Visibility::Public,
                state: LifecycleState::Listed,
                did: String::new(),
                allowed_scopes: vec![],
                custom_claims: Default::default(),
                token_algorithm: None,
                tokens_not_before: None,
                state_changed_at: Some(at),
                created_at: at,
                updated_at: at,
                revision: 0,
            };
            let query = MarketplaceQuery { text: Some(text), ..Default::default() };
            proptest::prop_assert_eq!(
                query.matcher().matches(&agent),
                reference_terms_match(&agent, &query)
            );
        }
    }

    #[test]
    fn transition_table() {
        use LifecycleState::*;
        assert!(Draft.can_transition_to(Active));
        assert!(!Draft.can_transition_to(Listed));
        assert!(!Retired.can_transition_to(Active));
        for s in LifecycleState::ALL {
            assert!(!s.can_transition_to(s), "{s} -> {s} is not a transition");
            assert_eq!(s.as_str().parse::<LifecycleState>().unwrap(), s);
        }
        let bearing: Vec<_> = LifecycleState::ALL
            .into_iter()
            .filter(|s| s.bears_tokens())
            .collect();
        assert_eq!(bearing, vec![Deployed, Listed, Active]);
    }
}
