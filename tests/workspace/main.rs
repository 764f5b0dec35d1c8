//! Workspace tidy tests: the architecture invariants of `ARCHITECTURE.md` checked on the
//! manifests and sources themselves, so they cannot silently stop being true.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn manifest(rel: &str) -> toml::Table {
    let path = root().join(rel);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.parse::<toml::Table>().unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every dependency name of a manifest: normal, dev and build, including target-specific ones.
fn all_deps(m: &toml::Table) -> Vec<String> {
    let mut out = Vec::new();
    let mut collect = |t: &toml::Table| {
        for key in ["dependencies", "dev-dependencies", "build-dependencies"] {
            if let Some(deps) = t.get(key).and_then(|d| d.as_table()) {
                out.extend(deps.keys().cloned());
            }
        }
    };
    collect(m);
    if let Some(targets) = m.get("target").and_then(|t| t.as_table()) {
        for t in targets.values().filter_map(|t| t.as_table()) {
            collect(t);
        }
    }
    out
}

fn check_forbidden(crate_manifest: &str, forbidden: &[&str]) {
    let deps = all_deps(&manifest(crate_manifest));
    for f in forbidden {
        assert!(
            !deps.iter().any(|d| d == f),
            "{crate_manifest} depends on {f}: ARCHITECTURE.md forbids it"
        );
    }
}

#[test]
fn protocol_has_no_io_dependencies() {
    check_forbidden(
        "protocol/Cargo.toml",
        &[
            "tokio",
            "quinn",
            "axum",
            "reqwest",
            "redb",
            "sqlx",
            "tradecast-node",
            "tradecast-hub",
            "tradecast-sim",
            "getrandom",
        ],
    );
}

#[test]
fn hub_and_node_never_depend_on_each_other_or_on_the_sim() {
    check_forbidden("hub/Cargo.toml", &["tradecast-node", "tradecast-sim", "tradecast-desktop"]);
    check_forbidden("node/Cargo.toml", &["tradecast-hub", "tradecast-sim", "tradecast-desktop"]);
    check_forbidden(
        "ea-sdk/sim/Cargo.toml",
        &["tradecast-hub", "tradecast-node", "tradecast-desktop"],
    );
    check_forbidden("desktop/Cargo.toml", &["tradecast-hub", "tradecast-sim"]);
    check_forbidden(
        "protocol/quic/Cargo.toml",
        &["tradecast-hub", "tradecast-node", "tradecast-sim", "tradecast-desktop"],
    );
}

#[test]
fn every_crate_uses_workspace_lints_and_versions() {
    for m in ["protocol", "protocol/quic", "node", "hub", "desktop", "ea-sdk/sim"] {
        let t = manifest(&format!("{m}/Cargo.toml"));
        let lints = t.get("lints").and_then(|l| l.get("workspace")).and_then(|w| w.as_bool());
        assert_eq!(lints, Some(true), "{m}: [lints] workspace = true is missing");
        for (key, deps) in ["dependencies", "dev-dependencies", "build-dependencies"]
            .iter()
            .filter_map(|k| t.get(*k).and_then(|d| d.as_table()).map(|d| (k, d)))
        {
            for (name, spec) in deps {
                let inherited = spec.get("workspace").and_then(|w| w.as_bool()) == Some(true);
                assert!(inherited, "{m}: [{key}] {name} must use `workspace = true`");
            }
        }
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if p.is_dir() {
            if !matches!(name, "target" | "fuzz" | "tests" | "benches" | "node_modules" | ".git") {
                rust_files(&p, out);
            }
        } else if name.ends_with(".rs") && p.components().any(|c| c.as_os_str() == "src") {
            out.push(p);
        }
    }
}

/// rust-analyzer's tidy rule: every module says what it owns in a `//!` comment at the top.
#[test]
fn every_module_opens_with_a_doc_comment() {
    let mut files = Vec::new();
    for dir in ["src", "protocol", "node", "hub", "desktop", "ea-sdk"] {
        rust_files(&root().join(dir), &mut files);
    }
    assert!(files.len() >= 6, "found too few sources: {files:?}");
    let missing: Vec<_> = files
        .iter()
        .filter(|p| {
            let text = std::fs::read_to_string(p).unwrap_or_default();
            let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or_default();
            !first.starts_with("//!")
        })
        .collect();
    assert!(missing.is_empty(), "modules without a `//!` doc comment: {missing:?}");
}
