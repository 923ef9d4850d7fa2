//! The marketplace as a directory: its categories and skills with the
//! number of agents listing each.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::oasf::{ClassRef, taxonomy};
use crate::{Idp, MarketplaceQuery, PageRequest, Result};

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
    /// The categories and capabilities of the agents the marketplace lists
    /// (what `search_marketplace` returns), with counts. Reads the whole
    /// marketplace: one pass over its pages.
    ///
    /// # Errors
    /// Store errors.
    pub async fn marketplace_categories(&self) -> Result<MarketplaceCategories> {
        let mut categories: BTreeMap<String, u64> = BTreeMap::new();
        let mut skills: BTreeMap<String, u64> = BTreeMap::new();
        let mut page = PageRequest::first(crate::MAX_PAGE_SIZE);
        loop {
            let found = self
                .search_marketplace(&MarketplaceQuery::default(), &page)
                .await?;
            for agent in &found.items {
                if let Some(c) = &agent.category {
                    *categories.entry(c.clone()).or_default() += 1;
                }
                for c in &agent.capabilities {
                    *skills.entry(c.clone()).or_default() += 1;
                }
            }
            match found.next_cursor {
                Some(cursor) => page.cursor = Some(cursor),
                None => break,
            }
        }
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
        })
    }
}
