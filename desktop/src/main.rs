//! `tradecast-desktop`: the node in a Tauri window. Until the desktop issue lands this shell only
//! says so; it is built by the slow suite, never by the default members.

fn main() {
    eprintln!(
        "tradecast-desktop is not built yet: run the headless `tradecast-node` instead (see node/README.md)"
    );
    std::process::exit(2);
}
