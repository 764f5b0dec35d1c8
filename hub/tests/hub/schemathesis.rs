//! Slow suite only (`TRADECAST_SLOW=1`): schemathesis generates requests from the OpenAPI
//! document (coverage, fuzzing and stateful phases) against a hub on each backend, as an owner;
//! the check is that no request gets a 5xx.

use crate::helpers::{Backend, TestHub};
use crate::on_both;

on_both!(slow_schemathesis_finds_no_server_errors);

fn schemathesis() -> std::process::Command {
    let found = std::process::Command::new("schemathesis")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        let status = std::process::Command::new("python3")
            .args(["-m", "pip", "install", "-q", "schemathesis"])
            .status()
            .expect("python3 to install schemathesis");
        assert!(status.success(), "pip install schemathesis failed");
    }
    std::process::Command::new("schemathesis")
}

async fn slow_schemathesis_finds_no_server_errors(b: Backend) {
    let hub = TestHub::start_with(b, |c| {
        let lots = tradecast_hub::config::BucketConfig { burst: 1_000_000, per_minute: 1_000_000 };
        c.rate_limits.per_ip = lots;
        c.rate_limits.per_account = lots;
        c.rate_limits.login_per_ip = lots;
    })
    .await;
    let owner = hub.owner().await;
    let url = hub.url("/api/v1/openapi.json");
    let token = owner.token.clone();
    // schemathesis keeps a cache in its working directory: not in the source tree.
    let workdir = tempfile::tempdir().unwrap();
    let cwd = workdir.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        schemathesis()
            .current_dir(cwd)
            .args(["run", &url, "--checks", "not_a_server_error", "-n", "30", "--workers", "1"])
            .args(["-H", &format!("Authorization: Bearer {token}")])
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "schemathesis found failures:\n{text}");
    assert!(text.contains("passed"), "{text}");
    hub.stop().await;
}
