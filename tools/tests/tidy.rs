//! Workspace style checks that run with the tests: every Rust file starts with a `//!` doc line
//! and stays under 1,000 lines.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            if name != "target" && !name.starts_with('.') {
                rust_files(&path, out);
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

fn workspace_files() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut files = Vec::new();
    for krate in ["broker", "storage", "net", "tools", "perf", "tuning"] {
        rust_files(&root.join(krate), &mut files);
    }
    assert!(files.len() > 10, "found the workspace's sources");
    files
}

#[test]
fn every_file_starts_with_a_module_doc() {
    for file in workspace_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            text.starts_with("//!"),
            "{} must start with a `//!` line saying what it holds",
            file.display()
        );
    }
}

#[test]
fn files_stay_under_a_thousand_lines() {
    for file in workspace_files() {
        let lines = std::fs::read_to_string(&file).unwrap().lines().count();
        assert!(lines < 1000, "{} has {lines} lines; split it", file.display());
    }
}

/// The broker's layers: cluster state below the partition service below the protocol front
/// ends. A lower layer never names a higher one, and the two front ends (Kafka, native) never
/// name each other; `server.rs`, `config.rs` and `lib.rs` assemble them all.
#[test]
fn broker_layers_import_only_downwards() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().join("broker/src");
    let rules: [(&str, &[&str]); 4] = [
        ("cluster", &["crate::partition", "crate::protocol", "crate::server", "crate::config"]),
        ("partition", &["crate::protocol", "crate::server", "crate::config"]),
        ("protocol/kafka", &["crate::protocol::native", "crate::server"]),
        ("protocol/native", &["crate::protocol::kafka", "crate::server"]),
    ];
    for (layer, forbidden) in rules {
        let mut files = Vec::new();
        let dir = src.join(layer);
        rust_files(&dir, &mut files);
        files.push(dir.with_extension("rs"));
        assert!(files.len() > 1, "found the {layer} layer");
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            for (n, line) in text.lines().enumerate() {
                for f in forbidden {
                    assert!(
                        !line.contains(f),
                        "{}:{}: the {layer} layer must not use `{f}` (a higher layer or the other front end)",
                        file.display(),
                        n + 1
                    );
                }
            }
        }
    }
}
