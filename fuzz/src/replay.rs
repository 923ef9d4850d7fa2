//! The replay of committed fuzz inputs, shared by the `fuzz_corpus_replay`
//! tests of `sentryagent-core`, `sentryagent-http` and `sentryagent-billing`
//! (each includes this file with `#[path]`; it is not part of the fuzz
//! crate).
//!
//! The inputs of a target are every file under the workspace's
//! `fuzz/seeds/<target>/` (made from the shared test vectors),
//! `fuzz/corpus/<target>/` (the minimized corpus of the fuzz runs) and
//! `fuzz/regressions/<target>/` (inputs that once crashed). See
//! `docs/fuzzing.md`.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

/// The workspace's `fuzz/` directory (every crate including this file sits
/// next to it).
pub fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// Every input file of `target`, sorted, with the number of seeds among
/// them.
pub fn inputs(target: &str) -> (Vec<PathBuf>, usize) {
    let mut all = Vec::new();
    let mut seeds = 0;
    for kind in ["seeds", "corpus", "regressions"] {
        let dir = fuzz_dir().join(kind).join(target);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut files: Vec<PathBuf> = entries
            .map(|e| {
                e.unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                    .path()
            })
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        if kind == "seeds" {
            seeds = files.len();
        }
        all.extend(files);
    }
    (all, seeds)
}

/// Runs `harness` on every input of `target`; fails with the list of inputs
/// that panicked, or when there are fewer than `min_seeds` seeds.
pub fn replay(target: &str, min_seeds: usize, harness: fn(&[u8]) -> bool) {
    let (files, seeds) = inputs(target);
    assert!(
        seeds >= min_seeds,
        "{target}: expected at least {min_seeds} seed files under fuzz/seeds/{target}, found {seeds}"
    );
    let mut failures = Vec::new();
    for path in &files {
        let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if catch_unwind(AssertUnwindSafe(|| harness(&data))).is_err() {
            failures.push(path.display().to_string());
        }
    }
    assert!(
        failures.is_empty(),
        "{target}: {} of {} inputs panicked: {failures:#?}",
        failures.len(),
        files.len()
    );
    eprintln!("{target}: replayed {} inputs", files.len());
}

/// The seed `fuzz/seeds/<target>/<name>`.
pub fn seed(target: &str, name: &str) -> Vec<u8> {
    let path = fuzz_dir().join("seeds").join(target).join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
