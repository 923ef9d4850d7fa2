#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod agent;
pub mod audit;
pub mod billing;
pub mod clock;
pub mod credentials;
pub mod did;
pub mod error;
pub mod health;
pub mod hex;
mod idp;
mod ids;
pub mod jose;
mod keys;
pub mod memory;
pub mod oauth;
pub mod page;
pub mod ratelimit;
pub mod revocation;
pub mod secret;
pub mod store;
pub mod tenant;
pub mod tier;
pub mod token;
pub mod usage;

#[cfg(any(test, feature = "conformance"))]
#[cfg_attr(docsrs, doc(cfg(feature = "conformance")))]
pub mod conformance;

pub use agent::{Agent, LifecycleState, MarketplaceMatcher, MarketplaceQuery, Visibility};
pub use audit::{AuditEvent, AuditQuery, RequestMeta};
pub use billing::{BillingProvider, NoBilling};
pub use clock::{Clock, ManualClock, SystemClock, Timestamp};
pub use credentials::AdminScope;
pub use error::{Error, LimitKind, Result};
pub use idp::{
    Admission, AgentPatch, AgentUsageRow, AuditTail, BillingOutcome, Caller, DailyCount,
    Ed25519PrivateJwk, Idp, IdpBuilder, IdpConfig, LimitUsage, NewAgent, PublisherUpdate,
    RegisteredAgent, SECRET_HASH_KEY_SETTING, Subscription, TenantUpdate, UsageSummary,
};
pub use ids::{AdminKeyId, AgentId, SecretId, TenantId};
pub use memory::{MemoryRateLimiter, MemoryStore, MemoryUsageMeter};
pub use page::{Page, PageRequest};
pub use ratelimit::{Decision, Quota, RateLimiter};
pub use revocation::RevocationCache;
pub use store::{
    AdminKeyStore, AgentStore, AuditLog, Backend, ClientRecord, IdpStore, MarkerStore,
    SettingStore, SigningKeyRecord, SigningKeyStore, StoreParts, TenantStore,
};
pub use tenant::{NewTenant, Tenant, TenantStatus};
pub use tier::{Tier, TierLimits, TierTable};
pub use token::{ClientCredentials, TokenRequest, TokenResponse};
pub use usage::UsageMeter;
