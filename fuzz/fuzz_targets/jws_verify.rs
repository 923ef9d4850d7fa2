//! Fuzz target `jws_verify`: see [`sentryagent_fuzz::jws_verify`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = sentryagent_fuzz::jws_verify(data);
});
