//! `sentryagentd`: see the library docs or `sentryagentd --help`.

/// The server's allocator. Under load the glibc allocator contends on its
/// arena locks between the runtime's worker threads (a response allocated
/// on one worker is often freed on another); mimalloc's thread-local free
/// lists do not (see `docs/load-test.md`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    sentryagentd::main()
}
