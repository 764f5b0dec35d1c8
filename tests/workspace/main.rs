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

/// The sync connection's wire constants (the hello's magic, version and answers, the QUIC close
/// codes) are defined once, in the protocol crate: the hub and the node only re-export them, so
/// the two ends can never disagree on a value or its integer type.
#[test]
fn wire_constants_are_defined_once_in_the_protocol() {
    let mut files = Vec::new();
    for dir in ["hub", "node"] {
        rust_files(&root().join(dir), &mut files);
    }
    let defined = [
        "const PROTOCOL_VERSION",
        "const HELLO_MAGIC",
        "const HELLO_ACCEPTED",
        "const HELLO_UPGRADE",
        "mod close_code",
    ];
    let twice: Vec<String> = files
        .iter()
        .flat_map(|p| {
            let text = std::fs::read_to_string(p).unwrap_or_default();
            defined
                .iter()
                .filter(|d| text.contains(*d))
                .map(|d| format!("{}: {d}", p.display()))
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(twice.is_empty(), "wire constants defined outside the protocol crate: {twice:?}");
    let wire = std::fs::read_to_string(root().join("protocol/src/session/wire.rs"))
        .expect("protocol/src/session/wire.rs");
    for d in defined {
        assert!(wire.contains(d), "protocol/src/session/wire.rs defines no `{d}`");
    }
}

/// The top-level modules of `node/src` a source file refers to through `crate::…` paths (in
/// `use` declarations and in code; comments are skipped).
fn crate_refs(text: &str) -> Vec<String> {
    let code: String = text
        .lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let ident = |s: &str| -> String {
        s.trim_start().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect()
    };
    let mut out = Vec::new();
    let mut rest = code.as_str();
    while let Some(i) = rest.find("crate::") {
        let before = rest[..i].chars().next_back();
        rest = &rest[i + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || matches!(c, '_' | ':' | '$')) {
            continue; // `$crate::`, `tradecast_node::crate_…`, `foo::crate::`
        }
        if let Some(group) = rest.trim_start().strip_prefix('{') {
            // `crate::{a, b::{c, d}}`: the first segment of each top-level item.
            let (mut depth, mut item_start) = (0usize, true);
            for c in group.char_indices() {
                match c.1 {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    _ if item_start && !c.1.is_whitespace() => {
                        out.push(ident(&group[c.0..]));
                        item_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            out.push(ident(rest));
        }
    }
    out.retain(|m| !m.is_empty() && m != "self");
    out
}

/// The node's modules import each other without a circle (issue 15): a module low in the
/// graph (the store, the clock, the row schema) never reaches back up to the edges (`serve`,
/// `cli`, `ui`). Edges are between top-level modules of `node/src` (a file or a directory).
#[test]
fn node_modules_import_without_a_circle() {
    let src = root().join("node/src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut edges: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
        Default::default();
    for f in &files {
        let rel = f.strip_prefix(&src).expect("under node/src");
        let first = rel.components().next().expect("a path").as_os_str().to_string_lossy();
        let module = first.trim_end_matches(".rs").to_owned();
        if module == "lib" || module == "main" {
            continue;
        }
        let text = std::fs::read_to_string(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let targets = edges.entry(module.clone()).or_default();
        targets.extend(crate_refs(&text).into_iter().filter(|t| *t != module));
    }
    assert!(edges.len() >= 10, "found too few node modules: {:?}", edges.keys());
    assert!(edges.get("runtime").is_some_and(|t| t.contains("store")), "no edge runtime → store");
    // Depth-first search; a back edge is a circle.
    fn visit<'a>(
        m: &'a str,
        edges: &'a std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
        path: &mut Vec<&'a str>,
        done: &mut std::collections::BTreeSet<&'a str>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| *p == m) {
            let mut circle: Vec<String> = path[i..].iter().map(|s| s.to_string()).collect();
            circle.push(m.to_owned());
            return Some(circle);
        }
        if !done.insert(m) {
            return None;
        }
        path.push(m);
        for t in edges.get(m).into_iter().flatten() {
            if let Some(c) = visit(t, edges, path, done) {
                return Some(c);
            }
        }
        path.pop();
        None
    }
    let mut done = std::collections::BTreeSet::new();
    for m in edges.keys() {
        if let Some(circle) = visit(m, &edges, &mut Vec::new(), &mut done) {
            panic!("node/src modules import each other in a circle: {}", circle.join(" → "));
        }
    }
}

#[test]
fn crate_refs_reads_paths_and_groups() {
    let text = "use crate::store::{self, Store};\nuse crate::{keys, policy::{self, X}};\n\
                // crate::ui in a comment\nlet x = crate::clock::wall_ms(); $crate::nope";
    assert_eq!(crate_refs(text), ["store", "keys", "policy", "clock"]);
}

/// The node's core files (ARCHITECTURE.md, "The node's core is sans-IO"): what the EA link's
/// state machine is made of. The driver (`runtime/mod.rs`: the lock, the long-poll) and the
/// feed and intake modules are not among them. `remote` (remote approvals) takes its clocks
/// as arguments; the order ids of an approval are drawn by the intake's `settle_in` it calls.
const NODE_CORE_FILES: &[&str] = &[
    "core",
    "remote",
    "ack",
    "offer",
    "reconcile",
    "guard",
    "bars",
    "ea_session",
    "ea_health",
    "provider",
    "status",
    "rows",
    "mt5",
];

/// The code of a Rust file without its comment lines.
fn code_lines(text: &str) -> String {
    text.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n")
}

/// A bare call of `name()` (not a method of an injected source: `self.clock.wall_ms()`).
fn calls_bare(code: &str, name: &str) -> bool {
    let pat = format!("{name}()");
    code.match_indices(&pat).any(|(i, _)| {
        let before = code[..i].chars().next_back();
        !matches!(before, Some('.') | Some('_')) && !before.is_some_and(char::is_alphanumeric)
    })
}

#[test]
fn the_node_core_imports_no_tokio_and_reads_no_clock() {
    for name in NODE_CORE_FILES {
        let path = root().join(format!("node/src/runtime/{name}.rs"));
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let code = code_lines(&text);
        for forbidden in [
            "tokio",
            "SystemTime",
            "Instant::now",
            "getrandom",
            "random_bytes",
            "OsRng",
            "thread_rng",
            "clock::wall_ms",
            "std::thread::sleep",
        ] {
            assert!(!code.contains(forbidden), "node/src/runtime/{name}.rs uses {forbidden}");
        }
        for bare in ["wall_ms", "new_order_id", "new_session_id"] {
            assert!(
                !calls_bare(&code, bare),
                "node/src/runtime/{name}.rs calls {bare}() instead of the node's injected source"
            );
        }
    }
}

#[test]
fn calls_bare_tells_a_clock_read_from_an_injected_one() {
    assert!(calls_bare("let t = wall_ms();", "wall_ms"));
    assert!(!calls_bare("let t = self.clock.wall_ms();", "wall_ms"));
    assert!(!calls_bare("let t = self.new_order_id()?;", "new_order_id"));
    assert!(calls_bare("let id = new_order_id()?;", "new_order_id"));
}
