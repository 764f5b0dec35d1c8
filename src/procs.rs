//! The demo's child processes. The hub and every node run in processes of their own, started
//! from the `tradecast` binary's hidden `hub` and `node` commands — the same code as the
//! `tradecast-hub` and `tradecast-node` binaries — so that the end-to-end tests can kill one
//! with SIGKILL (`kill -9`: nothing of it runs after) and start it again on the same data dir and
//! addresses, as a crash or a power cut would leave it.

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// Log filter of the children unless `RUST_LOG` says otherwise: warnings only, so the demo's
/// own lines stay readable.
const CHILD_LOG: &str = "warn,tradecast_hub::secrets=error";
/// Longest a child may take to answer its first HTTP request.
const READY_LIMIT: Duration = Duration::from_secs(60);

/// A running child process; killed when dropped, so none outlives the demo.
#[derive(Debug)]
pub struct Proc {
    name: String,
    child: Child,
}

impl Proc {
    /// Starts `program args…`: no stdin, stdout discarded (the demo prints what matters),
    /// stderr shared (their warnings and errors show). The children take their settings from
    /// their own files: this process's `TRADECAST_*` variables are not passed on.
    pub fn spawn(program: &Path, args: &[&OsStr], name: &str) -> anyhow::Result<Proc> {
        let mut cmd = Command::new(program);
        cmd.args(args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::inherit());
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("TRADECAST_") {
                cmd.env_remove(&key);
            }
        }
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", CHILD_LOG);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("start the {name} process ({})", program.display()))?;
        Ok(Proc { name: name.to_owned(), child })
    }

    /// Runs `program args…` to the end with `stdin` as its input; fails on a non-zero exit.
    pub fn run_with_input(program: &Path, args: &[&OsStr], stdin: &str) -> anyhow::Result<()> {
        use std::io::Write;
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("run {}", program.display()))?;
        if let Some(mut input) = child.stdin.take() {
            input.write_all(stdin.as_bytes())?;
        }
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!("{}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(())
    }

    /// Fails when the process has exited.
    pub fn check(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("the {} process exited: {status}", self.name);
        }
        Ok(())
    }

    /// Waits until `url` answers 200 (the process is serving), or fails when the process exits
    /// or [`READY_LIMIT`] passes.
    pub async fn ready(
        &mut self,
        http: &reqwest::Client,
        url: &str,
        token: Option<&str>,
    ) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            self.check()?;
            let mut req = http.get(url).timeout(Duration::from_secs(2));
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            if let Ok(r) = req.send().await
                && r.status().is_success()
            {
                return Ok(());
            }
            if started.elapsed() > READY_LIMIT {
                bail!("the {} process did not answer {url} in {READY_LIMIT:?}", self.name);
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// SIGKILL (on Windows, TerminateProcess): the process ends at once, mid-write or not.
    pub fn kill(mut self) -> anyhow::Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// Asks the process to stop (SIGTERM, which the hub and the node handle by finishing their
    /// work in progress) and waits up to `grace`; kills it past that. Returns whether it
    /// stopped by itself.
    pub async fn stop(mut self, grace: Duration) -> anyhow::Result<bool> {
        #[cfg(unix)]
        {
            use nix::sys::signal::{Signal, kill};
            use nix::unistd::Pid;
            let pid = i32::try_from(self.child.id()).context("process id")?;
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
            let started = Instant::now();
            while started.elapsed() < grace {
                if self.child.try_wait()?.is_some() {
                    return Ok(true);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        #[cfg(not(unix))]
        let _ = grace;
        self.child.kill()?;
        self.child.wait()?;
        Ok(false)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
