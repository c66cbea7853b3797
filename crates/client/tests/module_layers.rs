//! The client's layers (ARCHITECTURE.md, "Client code map"): `rpc` knows nothing of
//! processes, `procs` nothing of the public API above it. A tidy check over the sources, in
//! rust-analyzer's manner: a `use` that reaches up a layer fails here, naming the file.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Every `.rs` file below `dir`.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a source file belongs to (`rpc/link.rs` → `rpc`).
fn top_module(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).expect("below src");
    let first = relative.components().next().expect("a component");
    first
        .as_os_str()
        .to_string_lossy()
        .trim_end_matches(".rs")
        .to_owned()
}

/// The `crate::name` modules the code in `text` uses (comments, doc links included, are
/// not code).
fn uses(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
        let mut rest = line;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.insert(name);
            }
        }
    }
    found
}

/// How far up a module sits: it may use modules at its own rank or below, never above.
/// Plain data every layer shares is at the bottom; the public API (`client`, `connect`,
/// `process`, `fs`, `spec`, `lib`) at the top.
fn rank(module: &str) -> u8 {
    match module {
        "error" | "options" | "event" => 0,
        "rpc" => 1,
        "procs" => 2,
        _ => 3,
    }
}

#[test]
fn rpc_knows_no_processes_and_procs_no_api() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut checked = BTreeSet::new();
    let mut violations = Vec::new();
    for file in &files {
        let module = top_module(&src, file);
        let text = std::fs::read_to_string(file).expect("read source");
        for used in uses(&text) {
            let upward = rank(&used) > rank(&module);
            // Plain data shares nothing sideways either: it stays a leaf.
            let sideways = rank(&module) == 0 && used != module;
            if upward || sideways {
                let shown = file.strip_prefix(&src).expect("below src").display();
                violations.push(format!("{shown} ({module}) uses crate::{used}"));
            }
        }
        checked.insert(module);
    }
    for layer in ["rpc", "procs", "client", "error"] {
        assert!(
            checked.contains(layer),
            "no `{layer}` module found in {checked:?}: the scan is broken"
        );
    }
    assert!(
        violations.is_empty(),
        "a layer reaches up:\n{}",
        violations.join("\n")
    );
}
