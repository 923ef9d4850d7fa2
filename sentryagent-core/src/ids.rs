//! Typed identifiers. Each is a short prefix and a UUIDv7 (time ordered), for
//! example `agt_0193a1c2d3e47f00a1b2c3d4e5f60718`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};

use crate::{Error, Result};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        pub struct $name(String);

        impl $name {
            /// The prefix every generated id of this kind starts with.
            pub const PREFIX: &'static str = $prefix;

            /// A fresh, time-ordered id.
            pub fn generate() -> Self {
                $name(format!("{}_{}", $prefix, uuid::Uuid::now_v7().simple()))
            }

            /// Parses an id: 1 to 128 characters of `[A-Za-z0-9_.:-]`.
            pub fn parse(s: &str) -> Result<Self> {
                if valid_id(s) {
                    Ok($name(s.to_owned()))
                } else {
                    Err(Error::invalid($kind, "must be 1 to 128 characters of A-Z a-z 0-9 _ . : -"))
                }
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }

        impl FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self> {
                Self::parse(s)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
}

id_type!(
    /// A tenant (organisation).
    TenantId,
    "tnt",
    "tenant_id"
);
id_type!(
    /// An agent. It is also the agent's OAuth `client_id`.
    AgentId,
    "agt",
    "agent_id"
);
id_type!(
    /// An admin API key (its public identifier, not the secret).
    AdminKeyId,
    "key",
    "api_key_id"
);
id_type!(
    /// A client secret of an agent (its public identifier, not the secret).
    SecretId,
    "sec",
    "secret_id"
);
id_type!(
    /// A trust policy of a tenant (federation: which external tokens may be
    /// exchanged for which of the tenant's tokens).
    TrustPolicyId,
    "tp",
    "trust_policy_id"
);

id_type!(
    /// A person's account.
    UserId,
    "usr",
    "user_id"
);
id_type!(
    /// An invitation to join a tenant (its public identifier, not the token).
    InvitationId,
    "inv",
    "invitation_id"
);
id_type!(
    /// A signed-in session (its public identifier, not the session secret).
    SessionId,
    "ses",
    "session_id"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_parse_and_order() {
        let a = AgentId::generate();
        assert!(a.as_str().starts_with("agt_"));
        assert_eq!(AgentId::parse(a.as_str()).unwrap(), a);
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<AgentId>(&json).unwrap(), a);
    }

    #[test]
    fn bad_ids_are_refused() {
        for bad in ["", "a b", "x/y", &"a".repeat(129), "é"] {
            assert!(TenantId::parse(bad).is_err(), "{bad:?}");
            assert!(serde_json::from_value::<TenantId>(serde_json::json!(bad)).is_err());
        }
    }
}
