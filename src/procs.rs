//! The demo's child processes, and how they end. The hub and every node run in processes of
//! their own, started from the `tradecast` binary's hidden `hub` and `node` commands — the same
//! code as the `tradecast-hub` and `tradecast-node` binaries — so that the end-to-end tests can
//! kill one with SIGKILL (`kill -9`: nothing of it runs after) and start it again on the same
//! data dir and addresses, as a crash or a power cut would leave it.
//!
//! **No child outlives the demo, and no temporary data either**, however the demo ends:
//!
//! - *Asked to stop* — SIGINT (Ctrl-C), SIGTERM (`kill`, `timeout`, a service manager) or SIGHUP
//!   (the terminal closed): [`Shutdown`] catches all three from the start and the demo stops the
//!   same way for each: every process gets SIGTERM (the nodes first, so that they hand the hub
//!   what they have in hand; the hub last) and [`STOP_GRACE`] to finish, SIGKILL past that; then
//!   the temporary folder is removed. A second signal ends the demo at once, and what follows
//!   takes over. Each child runs in a process group of its own, so a terminal's Ctrl-C or
//!   hang-up, or `timeout`'s signal to its group, reaches the demo alone, which stops the
//!   children in that order.
//! - *Killed* (SIGKILL, a crash, an abort): nothing of the demo runs any more, so the children
//!   end on their own. Each is started with `--die-with-parent PID` and, first thing, asks the
//!   kernel for SIGKILL when its parent ends (Linux's `PR_SET_PDEATHSIG`, [`die_with_parent`]),
//!   then checks that its parent is still PID: a demo that died before the request was made
//!   would never send it. The child makes the request itself because the other way, from the
//!   parent between fork and exec (`pre_exec`), needs `unsafe`, which the workspace forbids.
//!   The kernel sends that signal when the *thread* that forked the child ends, not the whole
//!   process: a tokio worker or a blocking-pool thread (retired after 10 s idle) may end long
//!   before the demo does, so every child is forked by one thread that lives as long as this
//!   process ([`fork_from_keeper`]). SIGKILL, not SIGTERM: at that point nobody waits for a
//!   graceful stop, and every party commits durably before it acknowledges, so a kill loses
//!   nothing (the fault tests do it on purpose).
//! - *Temporary data after a kill*: the demo's data root is a `tradecast-demo-*` folder in the
//!   temporary directory ([`DataRoot`]), watched by a cleaner process (the hidden `clean-up`
//!   command, [`clean_up_when_closed`]) started right after the folder is made, on the read end
//!   of a pipe whose write end only the demo holds. When the demo ends, whichever way, the
//!   kernel closes that end; the cleaner then waits until no process names the folder in its
//!   command line any more (the children end by their parent-death signal), removes it and
//!   exits. SIGINT, SIGTERM and SIGHUP are blocked in the cleaner, so the signal that stopped
//!   the demo's group or its terminal does not end it before its work. `--data DIR` has no
//!   cleaner: that folder is kept. What is left uncovered: a SIGKILL in the microseconds
//!   between making the folder and starting the cleaner, a SIGKILL of the cleaner itself, and
//!   systems other than Linux (no parent-death signal: the children outlive a killed demo, and
//!   the cleaner removes the folder once they end).

use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// Log filter of the children unless `RUST_LOG` says otherwise: warnings only, so the demo's
/// own lines stay readable.
const CHILD_LOG: &str = "warn,tradecast_hub::secrets=error";
/// Longest a child may take to answer its first HTTP request.
const READY_LIMIT: Duration = Duration::from_secs(60);
/// Longest a process may take to stop after SIGTERM before it is killed.
pub const STOP_GRACE: Duration = Duration::from_secs(10);
/// The `tradecast` option that makes a child die with its parent ([`die_with_parent`]).
pub const DIE_WITH_PARENT_FLAG: &str = "--die-with-parent";
/// The hidden `tradecast` command of the cleaner ([`clean_up_when_closed`]).
pub const CLEAN_UP_COMMAND: &str = "clean-up";
/// The name of every temporary data root starts with this; the cleaner removes nothing else.
const TEMP_PREFIX: &str = "tradecast-demo-";
/// Longest the cleaner waits for the processes that use the folder to end before it removes it
/// anyway, and longest it retries the removal.
const CLEANER_WAIT: Duration = Duration::from_secs(30);
/// Longest the demo waits for its cleaner to exit once it has removed the folder itself.
const CLEANER_EXIT_WAIT: Duration = Duration::from_secs(5);

/// A running child process: the hub or a node. Dropped while running, it is stopped as the
/// demo stops it ([`Proc::stop`], waiting for it on this thread); it dies with the demo when
/// the demo is killed (the module's comment).
#[derive(Debug)]
pub struct Proc {
    name: String,
    child: Child,
}

impl Proc {
    /// Starts `program args…` (`program` is the `tradecast` binary; `args` one of its hidden
    /// commands): no stdin, stdout discarded (the demo prints what matters), stderr shared
    /// (their warnings and errors show), in a process group of its own, dying with this process.
    /// The children take their settings from their own files: this process's `TRADECAST_*`
    /// variables are not passed on.
    pub fn spawn(program: &Path, args: &[&OsStr], name: &str) -> anyhow::Result<Proc> {
        let mut cmd = child_command(program, args);
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::inherit());
        let child = fork_from_keeper(cmd)
            .with_context(|| format!("start the {name} process ({})", program.display()))?;
        Ok(Proc { name: name.to_owned(), child })
    }

    /// Runs `program args…` to the end with `stdin` as its input; fails on a non-zero exit.
    pub fn run_with_input(program: &Path, args: &[&OsStr], stdin: &str) -> anyhow::Result<()> {
        use std::io::Write;
        let mut cmd = child_command(program, args);
        cmd.stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child =
            fork_from_keeper(cmd).with_context(|| format!("run {}", program.display()))?;
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
        self.ask_to_stop();
        let started = Instant::now();
        while started.elapsed() < grace {
            if self.child.try_wait()?.is_some() {
                return Ok(true);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.child.kill()?;
        self.child.wait()?;
        Ok(false)
    }

    /// [`Proc::stop`] for [`Drop`]: the same, waiting on this thread.
    fn stop_blocking(&mut self, grace: Duration) -> io::Result<bool> {
        if self.child.try_wait()?.is_some() {
            return Ok(true);
        }
        self.ask_to_stop();
        let started = Instant::now();
        while started.elapsed() < grace {
            if self.child.try_wait()?.is_some() {
                return Ok(true);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child.kill()?;
        self.child.wait()?;
        Ok(false)
    }

    /// SIGTERM (nothing on other systems: [`Proc::stop`] then kills after the grace).
    fn ask_to_stop(&self) {
        #[cfg(unix)]
        {
            use nix::sys::signal::{Signal, kill};
            use nix::unistd::Pid;
            if let Ok(pid) = i32::try_from(self.child.id()) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        match self.stop_blocking(STOP_GRACE) {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(target: "tradecast::demo", process = %self.name, "did not stop in time; killed");
            }
            Err(e) => {
                tracing::warn!(target: "tradecast::demo", process = %self.name, error = %e, "could not stop");
            }
        }
    }
}

/// `program --die-with-parent PID args…`, in a process group of its own, without this
/// process's `TRADECAST_*` variables, logging warnings only unless `RUST_LOG` says otherwise.
fn child_command(program: &Path, args: &[&OsStr]) -> Command {
    let mut cmd = Command::new(program);
    cmd.arg(DIE_WITH_PARENT_FLAG).arg(std::process::id().to_string()).args(args);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("TRADECAST_") {
            cmd.env_remove(&key);
        }
    }
    if std::env::var_os("RUST_LOG").is_none() {
        cmd.env("RUST_LOG", CHILD_LOG);
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
    }
    cmd
}

/// A command to start, and where to send the started child.
type Fork = (Command, mpsc::SyncSender<io::Result<Child>>);

/// Starts `cmd` from the one thread that forks every child and lives as long as this process
/// (it waits on a channel whose sender is never dropped): a child's parent-death signal fires
/// when the thread that forked it ends, and this one ends only with the process.
fn fork_from_keeper(cmd: Command) -> io::Result<Child> {
    static KEEPER: OnceLock<mpsc::Sender<Fork>> = OnceLock::new();
    let keeper = KEEPER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Fork>();
        let started =
            std::thread::Builder::new().name("tradecast-forker".into()).spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            });
        if let Err(e) = started {
            // The receiver is gone with the closure: every send below fails and hands the
            // command back, to be started from the calling thread.
            tracing::warn!(target: "tradecast::demo", error = %e, "no forker thread");
        }
        tx
    });
    let (reply, child) = mpsc::sync_channel(1);
    match keeper.send((cmd, reply)) {
        Ok(()) => child.recv().map_err(|_| io::Error::other("the forker thread is gone"))?,
        Err(mpsc::SendError((mut cmd, _))) => cmd.spawn(),
    }
}

/// In a child, first thing: SIGKILL when the parent ends, and exit now if the parent (`pid`)
/// is already gone (then it ended before the request and the signal will never come).
pub fn die_with_parent(pid: u32) {
    #[cfg(target_os = "linux")]
    if let Err(e) = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL) {
        eprintln!("tradecast: cannot ask to die with the demo: {e}");
    }
    #[cfg(unix)]
    if u32::try_from(nix::unistd::getppid().as_raw()).ok() != Some(pid) {
        eprintln!("tradecast: the demo (process {pid}) is gone; not starting");
        std::process::exit(1);
    }
    #[cfg(not(unix))]
    let _ = pid;
}

/// A signal that stops the demo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopSignal {
    /// SIGINT: Ctrl-C.
    Interrupt,
    /// SIGTERM: `kill`, `timeout`, a service manager.
    Terminate,
    /// SIGHUP: the terminal closed.
    Hangup,
}

impl StopSignal {
    pub fn name(self) -> &'static str {
        match self {
            StopSignal::Interrupt => "SIGINT",
            StopSignal::Terminate => "SIGTERM",
            StopSignal::Hangup => "SIGHUP",
        }
    }

    /// The exit status of a program that ends because of it: 128 + the signal's number, as a
    /// shell reports a program killed by it.
    pub fn exit_code(self) -> u8 {
        match self {
            StopSignal::Interrupt => 130,
            StopSignal::Terminate => 143,
            StopSignal::Hangup => 129,
        }
    }
}

/// SIGINT, SIGTERM and SIGHUP, caught from [`Shutdown::listen`] on (none of them ends the
/// process by itself any more): the demo's one way to be asked to stop.
#[derive(Debug)]
pub struct Shutdown {
    #[cfg(unix)]
    streams: [(StopSignal, tokio::signal::unix::Signal); 3],
}

impl Shutdown {
    /// Catches the three signals from now on. Needs a tokio runtime with I/O enabled.
    pub fn listen() -> io::Result<Shutdown> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Shutdown {
                streams: [
                    (StopSignal::Interrupt, signal(SignalKind::interrupt())?),
                    (StopSignal::Terminate, signal(SignalKind::terminate())?),
                    (StopSignal::Hangup, signal(SignalKind::hangup())?),
                ],
            })
        }
        #[cfg(not(unix))]
        Ok(Shutdown {})
    }

    /// The first of the three to arrive. Any signal after it ends the process at once with
    /// that signal's status: the children then end by their parent-death signal and the
    /// temporary data by the cleaner.
    pub async fn first(self) -> StopSignal {
        #[cfg(unix)]
        {
            let mut streams = self.streams;
            let first = Self::next(&mut streams).await;
            eprintln!(
                "\ntradecast: {}: stopping the nodes, then the hub (another signal stops at once)",
                first.name()
            );
            tokio::spawn(async move {
                let again = Self::next(&mut streams).await;
                eprintln!("tradecast: {}: stopping at once", again.name());
                std::process::exit(i32::from(again.exit_code()));
            });
            first
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            StopSignal::Interrupt
        }
    }

    #[cfg(unix)]
    async fn next(streams: &mut [(StopSignal, tokio::signal::unix::Signal); 3]) -> StopSignal {
        let [(a, sa), (b, sb), (c, sc)] = streams;
        tokio::select! {
            _ = sa.recv() => *a,
            _ = sb.recv() => *b,
            _ = sc.recv() => *c,
        }
    }
}

/// Where the demo keeps its data: the folder `--data` names, kept; or a temporary one, removed
/// when this is dropped and, should the demo end without dropping it, by its cleaner process.
#[derive(Debug)]
pub struct DataRoot {
    path: PathBuf,
    temporary: Option<TempRoot>,
}

impl DataRoot {
    /// `dir`, made if missing, kept after the demo.
    pub fn kept(dir: &Path) -> anyhow::Result<DataRoot> {
        std::fs::create_dir_all(dir).with_context(|| format!("make {}", dir.display()))?;
        Ok(DataRoot { path: dir.to_owned(), temporary: None })
    }

    /// A new `tradecast-demo-*` folder in the temporary directory, and its cleaner: `program`
    /// (the `tradecast` binary) running its hidden `clean-up` command.
    pub fn temporary(program: &Path) -> anyhow::Result<DataRoot> {
        let dir = tempfile::Builder::new()
            .prefix(TEMP_PREFIX)
            .tempdir()
            .context("make a temporary folder")?;
        // Both ends close on exec: the cleaner gets the read end as its stdin, and no other
        // child holds the write end, so it closes when this process ends.
        let (read, write) = io::pipe()?;
        let mut cmd = Command::new(program);
        cmd.arg(CLEAN_UP_COMMAND)
            .arg(dir.path())
            .stdin(read)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        #[cfg(unix)]
        {
            use std::os::unix::process::CommandExt;
            cmd.process_group(0);
        }
        let cleaner =
            cmd.spawn().with_context(|| format!("start the cleaner ({})", program.display()))?;
        let path = dir.path().to_owned();
        Ok(DataRoot {
            path,
            temporary: Some(TempRoot { dir: Some(dir), demo_alive: Some(write), cleaner }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the folder is removed when the demo ends.
    pub fn is_temporary(&self) -> bool {
        self.temporary.is_some()
    }
}

/// A temporary data root and its cleaner.
#[derive(Debug)]
struct TempRoot {
    dir: Option<tempfile::TempDir>,
    /// The write end of the cleaner's pipe: open while the demo runs.
    demo_alive: Option<io::PipeWriter>,
    cleaner: Child,
}

impl Drop for TempRoot {
    fn drop(&mut self) {
        if let Some(dir) = self.dir.take() {
            let path = dir.path().to_owned();
            if let Err(e) = dir.close() {
                tracing::warn!(target: "tradecast::demo", dir = %path.display(), error = %e, "could not remove the temporary data; the cleaner will");
            }
        }
        // End of input for the cleaner: it finds the folder gone (or removes it) and exits.
        self.demo_alive.take();
        let started = Instant::now();
        while started.elapsed() < CLEANER_EXIT_WAIT {
            if !matches!(self.cleaner.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        tracing::warn!(target: "tradecast::demo", "the cleaner has not exited yet");
    }
}

/// The cleaner (hidden command `tradecast clean-up DIR`): waits for the end of its standard
/// input (the demo ended: the kernel closed the pipe's write end), then until no other process
/// names `dir` in its command line (bounded by [`CLEANER_WAIT`]), then removes `dir`. Ignores
/// SIGINT, SIGTERM and SIGHUP (blocked) so that the signal that stopped the demo does not stop
/// it before its work. Removes only a `tradecast-demo-*` folder.
pub fn clean_up_when_closed(dir: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use nix::sys::signal::{SigSet, Signal};
        let mut set = SigSet::empty();
        for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
            set.add(s);
        }
        // This thread is the process's only one: blocked here, blocked for the process.
        set.thread_block().context("block signals")?;
    }
    let named = dir.file_name().and_then(OsStr::to_str).is_some_and(|n| n.starts_with(TEMP_PREFIX));
    if !named || !dir.is_absolute() {
        bail!("not a demo's temporary folder: {}", dir.display());
    }
    // Until the demo's end (an error reading is taken as its end too).
    let _ = io::copy(&mut io::stdin().lock(), &mut io::sink());
    let started = Instant::now();
    while started.elapsed() < CLEANER_WAIT && named_by_another_process(dir) {
        std::thread::sleep(Duration::from_millis(50));
    }
    loop {
        match std::fs::remove_dir_all(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            // A process that used the folder may still be writing into it.
            Err(_) if started.elapsed() < CLEANER_WAIT => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => return Err(e).with_context(|| format!("remove {}", dir.display())),
        }
    }
}

/// Whether a process other than this one has an argument that starts with `dir` (the hub's
/// `--config DIR/hub/hub.toml`, a node's `--data DIR/NAME`). Linux only (`/proc`); elsewhere no.
fn named_by_another_process(dir: &Path) -> bool {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::ffi::OsStrExt;
        let needle = dir.as_os_str().as_bytes();
        let me = std::process::id().to_string();
        let Ok(entries) = std::fs::read_dir("/proc") else { return false };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(pid) = name.to_str() else { continue };
            if pid == me || !pid.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
            if cmdline.split(|b| *b == 0).any(|arg| arg.starts_with(needle)) {
                return true;
            }
        }
        false
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = dir;
        false
    }
}
