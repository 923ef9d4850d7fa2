//! Cursor paging.

use serde::{Deserialize, Serialize};

/// Default page size of listings.
pub const DEFAULT_PAGE_SIZE: usize = 50;
/// Largest page size of listings.
pub const MAX_PAGE_SIZE: usize = 500;

/// One page of a listing. `next_cursor` continues it; `None` means the end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Page<T> {
    /// Items, in the listing's order.
    pub items: Vec<T>,
    /// Opaque cursor of the next page.
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// Maps the items.
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            next_cursor: self.next_cursor,
        }
    }
}

/// Where a page starts and how long it is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageRequest {
    /// Cursor from a previous page; `None` starts at the beginning.
    pub cursor: Option<String>,
    /// Page size (1..=[`MAX_PAGE_SIZE`], default [`DEFAULT_PAGE_SIZE`]).
    pub limit: Option<usize>,
}

impl PageRequest {
    /// The first page of `limit` items.
    pub fn first(limit: usize) -> Self {
        PageRequest {
            cursor: None,
            limit: Some(limit),
        }
    }

    /// The page size to use.
    pub fn size(&self) -> usize {
        self.limit
            .unwrap_or(DEFAULT_PAGE_SIZE)
            .clamp(1, MAX_PAGE_SIZE)
    }
}
