#![doc = include_str!("../README.md")]

pub use sentryagent_core::*;
