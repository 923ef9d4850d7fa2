//! Fuzz target `did_parse`: see [`sentryagent_fuzz::did_parse`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = sentryagent_fuzz::did_parse(data);
});
