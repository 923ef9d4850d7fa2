//! Fuzz target `stripe_signature`: see [`sentryagent_fuzz::stripe_signature`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = sentryagent_fuzz::stripe_signature(data);
});
