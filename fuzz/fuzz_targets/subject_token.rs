//! Fuzz target `subject_token`: see [`sentryagent_fuzz::subject_token`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = sentryagent_fuzz::subject_token(data);
});
