//! The layers and the one direction their dependencies point (see "Architecture" in the
//! README). Each folder of `src/` is a layer; a file may name (`crate::x`) only its own
//! layer and those below it. This test reads every source file and fails on an import that
//! points upward, so the picture in the README stays true.

use std::path::{Path, PathBuf};

/// Top to bottom: each layer may use itself and every layer after it.
const LAYERS: &[(&str, &[&str])] = &[
    ("cli", &["cli"]),
    ("server", &["server"]),
    ("api", &["api"]),
    ("ops", &["ops"]),
    ("live", &["live"]),
    ("domain", &["domain"]),
    ("store", &["store"]),
    ("base", &["error", "config", "time", "http"]),
];

/// The layer of a top-level module of the crate.
fn layer_of(module: &str) -> Option<usize> {
    LAYERS
        .iter()
        .position(|(_, modules)| modules.contains(&module))
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a source file belongs to (`src/api/auth.rs` -> `api`,
/// `src/config.rs` -> `config`); `None` for the crate root and the binary.
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel.components().next()?.as_os_str().to_str()?.to_string();
    let name = first.strip_suffix(".rs").unwrap_or(&first).to_string();
    (!matches!(name.as_str(), "lib" | "main" | "layering")).then_some(name)
}

/// Every `crate::name` a file mentions, outside comments.
fn crate_uses(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.push(name);
            }
        }
        // `use crate::{a, b}` lists.
        if let Some(at) = code.find("crate::{") {
            let list = &code[at + "crate::{".len()..];
            for item in list.split(['}', ',']) {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    found.push(name);
                }
            }
        }
    }
    found
}

#[test]
fn no_layer_imports_a_higher_one() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut wrong = Vec::new();
    for file in &files {
        let Some(module) = module_of(&src, file) else {
            continue;
        };
        let Some(mine) = layer_of(&module) else {
            wrong.push(format!(
                "{}: module `{module}` is in no layer",
                file.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(file).unwrap();
        for used in crate_uses(&text) {
            match layer_of(&used) {
                Some(theirs) if theirs < mine => wrong.push(format!(
                    "{}: {} (layer `{}`) uses crate::{used} (layer `{}`, above it)",
                    file.display(),
                    module,
                    LAYERS[mine].0,
                    LAYERS[theirs].0
                )),
                Some(_) => {}
                None => wrong.push(format!("{}: crate::{used} is in no layer", file.display())),
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the layers:\n{}",
        wrong.join("\n")
    );
}
