//! The desktop app's window tests (the slow suite: every test here is `slow_*`).
//!
//! Each test starts its own Xvfb display and session bus, and WebKitWebDriver with
//! `TAURI_WEBVIEW_AUTOMATION=true`; the WebDriver session launches the app binary itself
//! (capabilities `webkitgtk:browserOptions`). The trader's story is then driven through the
//! window: first-run setup (identity, stay standalone, EA key shown once, the MT5 URL), a Fib-RSI
//! signal made by the node from bars the simulated terminal (the `tradecast-sim` binary, another
//! process) pushes, its approval on the dashboard, and the position it opens. Screenshots go to
//! `test-artifacts/desktop-*.png`. The second test builds the `.deb` with the npm Tauri CLI,
//! installs it with `dpkg -i` and runs the same story against `/usr/bin/tradecast-desktop`.
//!
//! Needs (apt): webkit2gtk-driver xvfb xauth dbus-x11, the Tauri build libraries, and for the
//! `.deb` test the npm `@tauri-apps/cli` (`.ci/run` installs all of them).

mod driver;
mod story;

use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_owned()
}

/// Where screenshots and logs go (gitignored).
fn artifacts() -> PathBuf {
    let dir = root().join("test-artifacts");
    std::fs::create_dir_all(&dir).expect("test-artifacts dir");
    dir
}

/// A binary of another workspace package, built by cargo (a separate process: the desktop
/// crate never depends on the sim, and runs the node's daemon as a user would).
fn workspace_binary(package: &str, bin: &str) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "-p", package, "--bin", bin])
        .current_dir(root())
        .status()
        .expect("cargo build");
    assert!(status.success(), "building {bin} failed");
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_tradecast-desktop")).parent().expect("bin dir");
    let path = bin_dir.join(bin);
    assert!(path.exists(), "{} missing after the build", path.display());
    path
}

fn sim_binary() -> PathBuf {
    workspace_binary("tradecast-sim", "tradecast-sim")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_window_first_run_setup_then_approve_a_sim_signal() {
    let app = PathBuf::from(env!("CARGO_BIN_EXE_tradecast-desktop"));
    story::run(&app, &sim_binary(), "dev").await;
}

/// The Tauri CLI from npm (`.ci/run` installs it under the cache dir; `TRADECAST_TAURI_CLI`
/// names another one).
fn tauri_cli() -> PathBuf {
    if let Ok(p) = std::env::var("TRADECAST_TAURI_CLI") {
        return PathBuf::from(p);
    }
    PathBuf::from("/var/cache/tradecast/tauri-cli/node_modules/.bin/tauri")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_deb_builds_installs_and_runs_the_window_story() {
    let cli = tauri_cli();
    assert!(
        cli.exists(),
        "{} missing: npm install --prefix /var/cache/tradecast/tauri-cli @tauri-apps/cli@2.12.6 (what .ci/run does)",
        cli.display()
    );
    let started = std::time::Instant::now();
    let out = Command::new(&cli)
        .args(["build", "--bundles", "deb", "--ci"])
        .current_dir(root().join("desktop"))
        .env("CI", "true")
        .output()
        .expect("tauri build");
    let log = artifacts().join("desktop-tauri-build.log");
    std::fs::write(&log, [&out.stdout[..], &out.stderr[..]].concat()).expect("write log");
    assert!(out.status.success(), "tauri build failed: see {}", log.display());
    eprintln!("tauri build --bundles deb: {:.0} s", started.elapsed().as_secs_f64());
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root().join("target"));
    let deb_dir = target.join("release/bundle/deb");
    let deb = std::fs::read_dir(&deb_dir)
        .unwrap_or_else(|e| panic!("{}: {e}", deb_dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "deb"))
        .max_by_key(|p| p.metadata().and_then(|m| m.modified()).ok())
        .expect("a .deb in the bundle dir");
    let size = deb.metadata().expect("deb metadata").len();
    eprintln!("{}: {:.1} MB", deb.display(), size as f64 / 1e6);
    // What the package holds: the binary, the desktop entry, the icons.
    let listing = Command::new("dpkg-deb").arg("-c").arg(&deb).output().expect("dpkg-deb -c");
    let listing = String::from_utf8_lossy(&listing.stdout);
    for want in [
        " usr/bin/tradecast-desktop\n",
        " usr/share/applications/Tradecast.desktop\n",
        " usr/share/icons/hicolor/128x128/apps/tradecast-desktop.png\n",
    ] {
        assert!(listing.contains(want), "{want} not in the .deb:\n{listing}");
    }
    let install = Command::new("dpkg").arg("-i").arg(&deb).output().expect("dpkg -i");
    assert!(
        install.status.success(),
        "dpkg -i failed: {}{}",
        String::from_utf8_lossy(&install.stdout),
        String::from_utf8_lossy(&install.stderr)
    );
    let installed = PathBuf::from("/usr/bin/tradecast-desktop");
    let version = Command::new(&installed).arg("--version").output().expect("--version");
    assert!(
        String::from_utf8_lossy(&version.stdout).starts_with("tradecast-desktop "),
        "{version:?}"
    );
    story::run(&installed, &sim_binary(), "deb").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_window_attaches_to_a_running_node_daemon() {
    use tradecast_node::config::Config;
    let node = workspace_binary("tradecast-node", "tradecast-node");
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("node");
    let init = Command::new(&node).args(["init", "--data"]).arg(&data).output().expect("init");
    assert!(init.status.success(), "{init:?}");
    let config = Config {
        ea_listen: format!("127.0.0.1:{}", driver::free_port()).parse().expect("addr"),
        api_listen: format!("127.0.0.1:{}", driver::free_port()).parse().expect("addr"),
        ..Config::load(&data).expect("config")
    };
    config.write(&data).expect("config.toml");
    let _daemon = driver::Kid(
        Command::new(&node)
            .args(["run", "--data"])
            .arg(&data)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("tradecast-node run"),
    );
    let token = std::fs::read_to_string(data.join("api-token")).expect("token").trim().to_owned();
    let http = reqwest::Client::builder().no_proxy().build().expect("client");
    let status_url = format!("http://{}/api/v1/status", config.api_listen);
    let status = || async {
        http.get(&status_url)
            .bearer_auth(&token)
            .send()
            .await
            .ok()
            .filter(|r| r.status().is_success())
    };
    let mut up = None;
    for _ in 0..100 {
        if let Some(r) = status().await {
            up = Some(r.json::<serde_json::Value>().await.expect("json"));
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let device = up.expect("the daemon answers")["device_id"].as_str().expect("id").to_owned();
    assert!(data.join("running.json").exists(), "the daemon announces itself");

    let display = driver::Display::start();
    let log = artifacts().join("desktop-attach-app.log");
    let args = vec!["--data".to_owned(), data.display().to_string()];
    let d = driver::Driver::start(
        &display,
        &PathBuf::from(env!("CARGO_BIN_EXE_tradecast-desktop")),
        &args,
        &log,
    )
    .await;
    d.until(
        "the daemon's setup page",
        90,
        "return location.pathname === '/setup' && !!document.getElementById('step-identity')",
    )
    .await;
    assert!(
        d.url().await.starts_with(&format!("http://{}/", config.api_listen)),
        "the daemon's origin"
    );
    let shown = d.js("return document.querySelector('#step-identity code').textContent").await;
    assert_eq!(shown.as_str(), Some(device.as_str()), "the daemon's identity");
    d.screenshot("attach-setup").await;
    d.quit().await;
    drop(display);
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert!(status().await.is_some(), "the daemon keeps running after the app quits");
    assert!(data.join("running.json").exists(), "and still owns the data dir");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(text.contains("attached to the running node"), "see {}", log.display());
    assert!(!text.contains("node running"), "the app started a second node: {}", log.display());
    assert!(!text.contains(&token), "the API token is in {}", log.display());
}
