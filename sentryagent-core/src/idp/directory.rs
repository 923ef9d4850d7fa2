//! The marketplace as a directory: its categories and skills with the
//! number of agents listing each.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::marketplace_index::IndexKind;
use crate::oasf::{ClassRef, taxonomy};
use crate::{Idp, Result};

/// The categories and skills of the marketplace
/// ([`Idp::marketplace_categories`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MarketplaceCategories {
    /// Each category with its number of agents, most used first.
    pub categories: Vec<CategoryCount>,
    /// Each capability with its number of agents and its OASF skill, most
    /// used first.
    pub skills: Vec<SkillCount>,
    /// Each OASF skill of the agents' capabilities with its number of
    /// agents (an agent counts once per skill), most used first: what the
    /// `skill_id` and `skill_name` filters find.
    pub oasf_skills: Vec<OasfSkillCount>,
}

/// An OASF skill and how many marketplace agents have it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OasfSkillCount {
    /// The OASF id.
    pub id: u32,
    /// The OASF name (`a/b/c`).
    pub name: String,
    /// Agents having it.
    pub count: u64,
}

/// A category and how many marketplace agents have it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CategoryCount {
    /// The category.
    pub name: String,
    /// Agents in it.
    pub count: u64,
}

/// A capability and how many marketplace agents offer it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SkillCount {
    /// The capability.
    pub capability: String,
    /// Agents offering it.
    pub count: u64,
    /// Its OASF skill, if it has one ([`crate::oasf`]).
    pub oasf: Option<ClassRef>,
}

fn ranked(counts: BTreeMap<String, u64>) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = counts.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v
}

impl Idp {
    /// The categories, capabilities and OASF skills of the agents the
    /// marketplace lists (what `search_marketplace` returns), with counts,
    /// from the store's index ([`AgentStore::marketplace_counts`](crate::AgentStore::marketplace_counts)).
    ///
    /// # Errors
    /// Store errors.
    pub async fn marketplace_categories(&self) -> Result<MarketplaceCategories> {
        let agents = &self.inner.store.agents;
        let categories: BTreeMap<String, u64> = agents
            .marketplace_counts(IndexKind::Category)
            .await?
            .into_iter()
            .collect();
        let skills: BTreeMap<String, u64> = agents
            .marketplace_counts(IndexKind::Capability)
            .await?
            .into_iter()
            .collect();
        let oasf_skills: BTreeMap<String, u64> = agents
            .marketplace_counts(IndexKind::SkillName)
            .await?
            .into_iter()
            .collect();
        let t = taxonomy();
        Ok(MarketplaceCategories {
            categories: ranked(categories)
                .into_iter()
                .map(|(name, count)| CategoryCount { name, count })
                .collect(),
            skills: ranked(skills)
                .into_iter()
                .map(|(capability, count)| SkillCount {
                    oasf: t.skill_for(&capability).map(|s| ClassRef {
                        id: s.id,
                        name: s.name.clone(),
                    }),
                    capability,
                    count,
                })
                .collect(),
            oasf_skills: ranked(oasf_skills)
                .into_iter()
                .filter_map(|(name, count)| {
                    t.skill_for(&name).map(|s| OasfSkillCount {
                        id: s.id,
                        name: s.name.clone(),
                        count,
                    })
                })
                .collect(),
        })
    }
}
