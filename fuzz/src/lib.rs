//! Fuzz harnesses of SentryAgent's parsers.
//!
//! Each `fuzz_targets/<name>.rs` calls the function of the same name here.
//! The harnesses live in one file per crate under test, so that each crate's
//! `tests/fuzz_corpus_replay.rs` can compile the file of its own harnesses as
//! a module (it cannot depend on the other crates) and replay every committed
//! corpus input through exactly the code the fuzzer runs, on stable:
//!
//! | file | targets | replayed by |
//! |---|---|---|
//! | `core_targets.rs` | `jws_verify`, `did_parse`, `client_assertion`, `subject_token` | `sentryagent-core` |
//! | `http_targets.rs` | `token_form` | `sentryagent-http` |
//! | `billing_targets.rs` | `stripe_signature` | `sentryagent-billing` |
//!
//! `replay.rs`, the replay loop those tests share, is not part of this crate.

mod billing_targets;
mod core_targets;
mod http_targets;

pub use billing_targets::*;
pub use core_targets::*;
pub use http_targets::*;
