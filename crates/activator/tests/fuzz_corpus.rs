//! Replays the committed fuzz corpus (tests/fuzz/corpus, grown by `make fuzz`)
//! through the same checks the fuzz targets run, so every input the fuzzer
//! ever found interesting stays a regression test on stable Rust.

use std::path::PathBuf;

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fuzz/corpus")
        .join(target);
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let inputs: Vec<Vec<u8>> = entries
        .flatten()
        .filter_map(|e| std::fs::read(e.path()).ok())
        .collect();
    assert!(!inputs.is_empty(), "no corpus in {}", dir.display());
    inputs
}

#[test]
fn router_corpus_keeps_its_invariants() {
    for input in corpus("route") {
        siesta_activator::invariants::check(&input);
    }
}

#[test]
fn duration_corpus_parses_or_refuses_without_panicking() {
    for input in corpus("duration") {
        let text = String::from_utf8_lossy(&input);
        if let Ok(d) = siesta_activator::parse_duration(&text) {
            assert!(d.as_secs_f64().is_finite());
        }
    }
}
