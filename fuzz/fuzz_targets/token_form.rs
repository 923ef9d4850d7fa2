//! Fuzz target `token_form`: see [`sentryagent_fuzz::token_form`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = sentryagent_fuzz::token_form(data);
});
