#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

// Every public type has one path: the crate root. The modules behind the
// re-exports below are hidden; they stay reachable only for the helper
// functions the sibling crates share (search terms, GCRA, hex...).
#[doc(hidden)]
pub mod agent;
#[doc(hidden)]
pub mod audit;
#[doc(hidden)]
pub mod billing;
#[doc(hidden)]
pub mod clock;
pub mod conditional;
#[doc(hidden)]
pub mod credentials;
pub mod did;
pub mod domain_proof;
#[doc(hidden)]
pub mod error;
pub mod federation;
pub mod form;
#[doc(hidden)]
pub mod health;
#[doc(hidden)]
pub mod hex;
mod idp;
mod ids;
pub mod jcs;
pub mod jose;
mod keys;
pub mod marketplace_index;
#[doc(hidden)]
pub mod memory;
pub mod oasf;
#[doc(hidden)]
pub mod oauth;
#[doc(hidden)]
pub mod observe;
#[doc(hidden)]
pub mod page;
#[doc(hidden)]
pub mod people;
#[doc(hidden)]
pub mod ratelimit;
#[doc(hidden)]
pub mod revocation;
#[doc(hidden)]
pub mod secret;
#[doc(hidden)]
pub mod store;
#[doc(hidden)]
pub mod tenant;
#[doc(hidden)]
pub mod tier;
#[doc(hidden)]
pub mod token;
#[doc(hidden)]
pub mod usage;
pub mod vc;

#[cfg(any(test, feature = "conformance"))]
#[cfg_attr(docsrs, doc(cfg(feature = "conformance")))]
pub mod conformance;

pub use agent::{
    Agent, AgentStateCounts, LifecycleState, MarketplaceMatcher, MarketplaceQuery, Visibility,
};
pub use audit::{
    AuditEvent, AuditQuery, ChainError, ChainHead, GENESIS_HASH, NewAuditEvent, Outcome,
    RequestMeta, verify_chain,
};
pub use billing::{
    BillingEvent, BillingEventKind, BillingProvider, CheckoutSession, NoBilling, UsageReport,
};
pub use clock::{Clock, ManualClock, MonotonicClock, SystemClock, Timestamp};
pub use credentials::{
    ADMIN_KEY_PREFIX, ADMIN_KEY_VISIBLE_LEN, AdminKey, AdminScope, CLIENT_SECRET_PREFIX,
    ClientSecret,
};
pub use error::{BoxError, Error, LimitKind, Result};
pub use health::{BackendHealth, HealthStatus};
pub use idp::{
    ATTESTATION_TYP, Admission, AgentPatch, AgentUsageRow, AuditTail, BADGE_RENEWAL, BADGE_TYPE,
    BillingOutcome, Caller, CategoryCount, CheckOutcome, CredentialVerification,
    DOMAIN_PROOF_ATTEMPTS, DailyCount, Ed25519PrivateJwk, Idp, IdpBuilder, IdpConfig, LimitUsage,
    MAX_TRUST_POLICIES, MarketplaceCategories, NewAgent, OasfSkillCount, PublisherUpdate,
    RegisteredAgent, SECRET_HASH_KEY_SETTING, STATUS_LIST_BITS, STATUS_LIST_PATH, SkillCount,
    Subscription, TenantUpdate, UsageSummary,
};
pub use ids::{
    AdminKeyId, AgentId, InvitationId, SecretId, SessionId, TenantId, TrustPolicyId, UserId,
};
pub use memory::{MemoryRateLimiter, MemoryStore, MemoryUsageMeter};
pub use oauth::OAuthError;
pub use observe::{IdpEvent, IdpObserver};
pub use page::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, Page, PageRequest};
pub use people::{
    AcceptInvitation, Account, CompletePasswordReset, CreatedInvitation, Invitation,
    InvitationInfo, InvitationStatus, Me, Member, Membership, NewInvitation, PasswordHash,
    PasswordResetLink, PeopleConfig, Role, SealedSecret, Secret, Session, SessionAuth,
    SessionCredentials, SessionInfo, SignIn, SignUp, SignedIn, SignupMode, TenantMembership,
    TotpEnrollment, TotpState, User, UserStatus, normalize_email,
};
pub use ratelimit::{Decision, Decisions, MAX_KEY_LEN, Quota, RateLimiter};
pub use revocation::RevocationCache;
pub use secret::{SecretHash, secrets_match};
pub use store::{
    AdminKeyStore, AgentStore, AuditLog, Backend, ClientRecord, IdpStore, IntrospectionRecord,
    InvitationStore, MAX_AGENT_BATCH, MarkerStore, MembershipStore, NewAgentRecord, SessionStore,
    SettingStore, SigningKeyRecord, SigningKeyStore, StoreParts, TenantStore, TrustPolicyStore,
    UserStore,
};
pub use tenant::{
    BillingInfo, NewTenant, Publisher, PublisherVerification, PublisherVerificationMethod,
    SubscriptionStatus, Tenant, TenantSettings, TenantSettingsPatch, TenantStatus,
};
pub use tier::{Tier, TierLimits, TierTable};
pub use token::{
    ACCESS_TOKEN_TYP, AccessTokenClaims, AuthenticatedClient, CLIENT_CREDENTIALS, ClientAuthMethod,
    ClientCredentials, Introspection, IntrospectionClaims, JWT_BEARER_ASSERTION_TYPE,
    RESERVED_CLAIMS, TokenRequest, TokenResponse,
};
pub use usage::{Bucket, UsageBatch, UsageIncrement, UsageKind, UsageMeter};
