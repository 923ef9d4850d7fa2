//! Fuzz target `client_assertion`: see [`sentryagent_fuzz::client_assertion`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = sentryagent_fuzz::client_assertion(data);
});
