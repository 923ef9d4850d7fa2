//! Marketplace agents as OASF records (agntcy/oasf `types/v1/record.proto`),
//! the format AGNTCY directories read.
//!
//! Capabilities become OASF skills through the taxonomy shipped with the
//! crate (`data/oasf/taxonomy.json`, generated from the `schema/` of the
//! agntcy/oasf release named in [`Taxonomy::release`] by
//! `data/oasf/generate.py`). A capability maps to the skill whose
//!
//! 1. full name it is (`ai_ml_engineering/agent_development/agent_memory`),
//! 2. id it names as `oasf:<id>` (`oasf:70804`), or
//! 3. last name segment it is (`agent_memory`), when no other skill ends
//!    with the same segment,
//!
//! compared without regard to ASCII case. A capability without a skill is
//! kept in the record's `annotations` (`sentryagent.unmapped_capabilities`,
//! space separated: capabilities hold no white space), never dropped. The
//! agent's category maps to an OASF domain by the same rules
//! (`sentryagent.unmapped_category` otherwise).
//!
//! ```
//! let t = sentryagent_core::oasf::taxonomy();
//! let skill = t.skill_for("agent_memory").unwrap();
//! assert_eq!(skill.name, "ai_ml_engineering/agent_development/agent_memory");
//! assert_eq!(t.skill_for(&format!("oasf:{}", skill.id)), Some(skill));
//! assert!(t.skill_for("invoices.search").is_none());
//! ```

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Agent, Tenant};

/// The taxonomy data (see the module docs).
const TAXONOMY_JSON: &str = include_str!("../data/oasf/taxonomy.json");

/// The A2A module's name in the taxonomy.
pub const A2A_MODULE: &str = "integration/a2a";

/// The A2A card schema version written in the A2A module's data.
pub const A2A_CARD_SCHEMA_VERSION: &str = "v1.0.0";

/// Annotation listing capabilities without an OASF skill.
pub const UNMAPPED_CAPABILITIES: &str = "sentryagent.unmapped_capabilities";

/// Annotation holding a category without an OASF domain.
pub const UNMAPPED_CATEGORY: &str = "sentryagent.unmapped_category";

/// One class of the taxonomy: a skill, domain or module.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaxonomyClass {
    /// The OASF id (parent id * 100 + own uid).
    pub id: u32,
    /// The path of names from the top category (`a/b/c`).
    pub name: String,
    /// Its human-readable caption.
    pub caption: String,
}

/// The OASF skills, domains and modules of one release.
#[derive(Debug, Deserialize)]
pub struct Taxonomy {
    /// Where it was generated from.
    pub source: String,
    /// The agntcy/oasf release tag (`v1.1.1`).
    pub release: String,
    /// Its commit.
    pub commit: String,
    /// The schema version records declare (`schema_version`).
    pub schema_version: String,
    /// Every skill, by id.
    pub skills: Vec<TaxonomyClass>,
    /// Every domain, by id.
    pub domains: Vec<TaxonomyClass>,
    /// Every module, by id.
    pub modules: Vec<TaxonomyClass>,
    #[serde(skip)]
    index: Index,
}

#[derive(Debug, Default)]
struct Index {
    skills: Lookup,
    domains: Lookup,
}

/// Lower-cased full name, `oasf:<id>` and unique last segment to the
/// position of a class.
#[derive(Debug, Default)]
struct Lookup(HashMap<String, usize>);

impl Lookup {
    fn of(classes: &[TaxonomyClass]) -> Lookup {
        let mut map = HashMap::new();
        let mut leaves: HashMap<String, Option<usize>> = HashMap::new();
        for (i, c) in classes.iter().enumerate() {
            map.insert(c.name.to_ascii_lowercase(), i);
            map.insert(format!("oasf:{}", c.id), i);
            let leaf = c.name.rsplit('/').next().unwrap_or(&c.name);
            leaves
                .entry(leaf.to_ascii_lowercase())
                .and_modify(|e| *e = None)
                .or_insert(Some(i));
        }
        for (leaf, i) in leaves {
            if let Some(i) = i {
                map.entry(leaf).or_insert(i);
            }
        }
        Lookup(map)
    }

    fn find<'a>(&self, classes: &'a [TaxonomyClass], text: &str) -> Option<&'a TaxonomyClass> {
        self.0.get(&text.to_ascii_lowercase()).map(|&i| &classes[i])
    }
}

impl Taxonomy {
    /// The OASF skill of a capability (see the module docs).
    pub fn skill_for(&self, capability: &str) -> Option<&TaxonomyClass> {
        self.index.skills.find(&self.skills, capability)
    }

    /// The OASF domain of a category (see the module docs).
    pub fn domain_for(&self, category: &str) -> Option<&TaxonomyClass> {
        self.index.domains.find(&self.domains, category)
    }

    /// The module of that exact name.
    pub fn module(&self, name: &str) -> Option<&TaxonomyClass> {
        self.modules.iter().find(|m| m.name == name)
    }
}

/// The taxonomy shipped with the crate.
pub fn taxonomy() -> &'static Taxonomy {
    static TAXONOMY: OnceLock<Taxonomy> = OnceLock::new();
    TAXONOMY.get_or_init(|| {
        let mut t: Taxonomy =
            serde_json::from_str(TAXONOMY_JSON).expect("the shipped OASF taxonomy parses");
        t.index = Index {
            skills: Lookup::of(&t.skills),
            domains: Lookup::of(&t.domains),
        };
        t
    })
}

/// An OASF record (`agntcy.oasf.types.v1.Record`, JSON field names).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Record {
    /// The agent's name.
    pub name: String,
    /// The agent's software version.
    pub version: String,
    /// The OASF schema version ([`Taxonomy::schema_version`]).
    pub schema_version: String,
    /// The agent's description.
    pub description: String,
    /// The publisher's display name.
    pub authors: Vec<String>,
    /// When the agent was registered (RFC 3339).
    pub created_at: String,
    /// The capabilities that have an OASF skill.
    pub skills: Vec<ClassRef>,
    /// The category's OASF domain, if it has one.
    pub domains: Vec<ClassRef>,
    /// Where the listing is: the marketplace entry and the signed card.
    pub locators: Vec<Locator>,
    /// The A2A integration: the signed agent card.
    pub modules: Vec<Module>,
    /// The agent id, DID, publisher, verification, tags, and whatever has
    /// no OASF class (see the module docs).
    pub annotations: BTreeMap<String, String>,
}

/// A skill or domain of a [`Record`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClassRef {
    /// The OASF id.
    pub id: u32,
    /// The OASF name (`a/b/c`).
    pub name: String,
}

/// A locator of a [`Record`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Locator {
    /// `url`.
    #[serde(rename = "type")]
    pub type_: String,
    /// The URLs.
    pub urls: Vec<String>,
}

/// A module of a [`Record`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Module {
    /// `integration/a2a`.
    pub name: String,
    /// Its OASF id.
    pub id: u32,
    /// `{"card_data": <signed A2A card>, "card_schema_version": "v1.0.0"}`.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub data: Value,
    /// Where the card is served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact: Option<Descriptor>,
}

/// An OASF descriptor of a module's artifact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Descriptor {
    /// `application/json`.
    pub media_type: String,
    /// The URLs it is served at.
    pub urls: Vec<String>,
}

/// The annotations of an agent's [`Record`] that come from the agent
/// itself: its id, DID, state, last change, tags, and the capabilities and
/// category without an OASF class (see the module docs).
pub fn agent_annotations(agent: &Agent) -> BTreeMap<String, String> {
    let t = taxonomy();
    let mut annotations = BTreeMap::from([
        ("sentryagent.agent_id".to_owned(), agent.id.to_string()),
        ("sentryagent.did".to_owned(), agent.did.clone()),
        (
            "sentryagent.state".to_owned(),
            agent.state.as_str().to_owned(),
        ),
        (
            "sentryagent.updated_at".to_owned(),
            agent.updated_at.to_rfc3339(),
        ),
    ]);
    if !agent.tags.is_empty() {
        annotations.insert("sentryagent.tags".into(), agent.tags.join(" "));
    }
    let unmapped: Vec<&str> = agent
        .capabilities
        .iter()
        .filter(|c| t.skill_for(c).is_none())
        .map(String::as_str)
        .collect();
    if !unmapped.is_empty() {
        annotations.insert(UNMAPPED_CAPABILITIES.into(), unmapped.join(" "));
    }
    if let Some(category) = &agent.category
        && t.domain_for(category).is_none()
    {
        annotations.insert(UNMAPPED_CATEGORY.into(), category.clone());
    }
    annotations
}

/// Annotation naming the publisher (its slug).
pub const PUBLISHER: &str = "sentryagent.publisher";

/// Annotation saying whether the publisher is verified (`true`/`false`).
pub const PUBLISHER_VERIFIED: &str = "sentryagent.publisher_verified";

/// The annotations of a [`Record`] that come from the publisher:
/// [`PUBLISHER`] and [`PUBLISHER_VERIFIED`].
pub fn publisher_annotations(tenant: &Tenant) -> BTreeMap<String, String> {
    BTreeMap::from([
        (PUBLISHER.to_owned(), tenant.slug.clone()),
        (
            PUBLISHER_VERIFIED.to_owned(),
            tenant.publisher.verified.to_string(),
        ),
    ])
}

/// The OASF record of a marketplace agent published by `tenant`, with its
/// entry at `entry_url` and its signed A2A card `card` served at
/// `card_url`.
pub fn record(
    agent: &Agent,
    tenant: &Tenant,
    entry_url: &str,
    card_url: &str,
    card: Value,
) -> Record {
    let t = taxonomy();
    let mut skills: Vec<ClassRef> = Vec::new();
    for s in agent.capabilities.iter().filter_map(|c| t.skill_for(c)) {
        if !skills.iter().any(|k| k.id == s.id) {
            skills.push(ClassRef {
                id: s.id,
                name: s.name.clone(),
            });
        }
    }
    let mut annotations = agent_annotations(agent);
    annotations.extend(publisher_annotations(tenant));
    let domains: Vec<ClassRef> = agent
        .category
        .as_deref()
        .and_then(|c| t.domain_for(c))
        .map(|d| ClassRef {
            id: d.id,
            name: d.name.clone(),
        })
        .into_iter()
        .collect();
    let a2a_id = t.module(A2A_MODULE).map_or(0, |m| m.id);
    Record {
        name: agent.name.clone(),
        version: agent.version.clone(),
        schema_version: t.schema_version.clone(),
        description: agent.description.clone(),
        authors: vec![tenant.publisher.display_name.clone()],
        created_at: agent.created_at.to_rfc3339(),
        skills,
        domains,
        locators: vec![Locator {
            type_: "url".into(),
            urls: vec![entry_url.to_owned(), card_url.to_owned()],
        }],
        modules: vec![Module {
            name: A2A_MODULE.into(),
            id: a2a_id,
            data: serde_json::json!({
                "card_data": card,
                "card_schema_version": A2A_CARD_SCHEMA_VERSION,
            }),
            artifact: Some(Descriptor {
                media_type: "application/json".into(),
                urls: vec![card_url.to_owned()],
            }),
        }],
        annotations,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taxonomy_is_the_named_release() {
        let t = taxonomy();
        assert_eq!(t.release, "v1.1.1");
        assert_eq!(t.schema_version, "1.1.0");
        assert!(t.skills.len() > 400, "{}", t.skills.len());
        assert!(t.domains.len() > 100);
        assert_eq!(t.module(A2A_MODULE).map(|m| m.id), Some(203));
        // Ids follow the parent chain: category 7, its child 8, its child 4.
        let s = t
            .skill_for("ai_ml_engineering/agent_development/agent_memory")
            .unwrap();
        assert_eq!(s.id, 70804);
        for (i, c) in t.skills.iter().enumerate() {
            assert_eq!(t.skill_for(&c.name), Some(c), "{}", c.name);
            assert_eq!(t.skill_for(&format!("oasf:{}", c.id)), Some(c));
            // A child's id extends its parent's.
            if let Some((parent, _)) = c.name.rsplit_once('/') {
                let p = t.skill_for(parent).unwrap();
                assert_eq!(c.id / 100, p.id, "{}", c.name);
            }
            assert!(t.skills[..i].iter().all(|o| o.id != c.id));
        }
    }

    #[test]
    fn lookups_are_case_blind_and_refuse_ambiguous_leaves() {
        let t = taxonomy();
        assert_eq!(t.skill_for("Agent_Memory"), t.skill_for("agent_memory"));
        assert!(t.skill_for("oasf:1").is_none() || t.skill_for("oasf:1").unwrap().id == 1);
        assert!(t.skill_for("").is_none());
        assert!(t.skill_for("oasf:").is_none());
        let classes = vec![
            TaxonomyClass {
                id: 1,
                name: "a".into(),
                caption: String::new(),
            },
            TaxonomyClass {
                id: 101,
                name: "a/x".into(),
                caption: String::new(),
            },
            TaxonomyClass {
                id: 2,
                name: "b".into(),
                caption: String::new(),
            },
            TaxonomyClass {
                id: 201,
                name: "b/x".into(),
                caption: String::new(),
            },
        ];
        let l = Lookup::of(&classes);
        assert!(l.find(&classes, "x").is_none());
        assert_eq!(l.find(&classes, "b/x").unwrap().id, 201);
        assert_eq!(l.find(&classes, "A").unwrap().id, 1);
    }
}
