//! How the demo ends (issue 24): the real `tradecast demo` process, as a person or a service
//! manager runs it, in a temporary directory of its own (`TMPDIR`), stopped by a signal. SIGTERM
//! and SIGHUP are handled as Ctrl-C is: every child stopped, the temporary data removed. After
//! SIGKILL nothing of the demo runs, yet its children end by their parent-death signal and its
//! cleaner removes the data (`src/procs.rs`). Each test records the demo's children from
//! `/proc` before the signal and checks that none of them is left afterwards, and that nothing
//! is left in its `TMPDIR`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Longest the demo may take to start its hub and nodes (a debug build on a busy machine).
const START_LIMIT: Duration = Duration::from_secs(60);
/// The longest the demo waits for its public track record after the replay.
const PUBLIC_RECORD_LIMIT: Duration = Duration::from_secs(150);
/// Longest the demo, its children and its cleaner may take to be gone after the signal.
const END_LIMIT: Duration = Duration::from_secs(30);

/// A process as `/proc` shows it when recorded: its start time tells it from a later process
/// with the same id.
#[derive(Debug)]
struct Recorded {
    pid: i32,
    start_ticks: u64,
    cmdline: String,
}

impl Recorded {
    /// Still running: same process, not a zombie (a zombie's parent merely has not reaped it).
    fn running(&self) -> bool {
        stat(self.pid).is_some_and(|(state, _, start)| start == self.start_ticks && state != 'Z')
    }
}

/// (state, parent pid, start time in clock ticks) of `pid`, from `/proc/PID/stat`.
fn stat(pid: i32) -> Option<(char, i32, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid …": comm may hold spaces and parentheses; the rest follows the
    // last ')'. The start time is field 22 overall, the 20th after comm.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    Some((state, fields.get(1)?.parse().ok()?, fields.get(19)?.parse().ok()?))
}

/// Every running process whose parent is `parent`.
fn children_of(parent: i32) -> Vec<Recorded> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        let Some((state, ppid, start_ticks)) = stat(pid) else { continue };
        if ppid != parent || state == 'Z' {
            continue;
        }
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ").trim().to_owned();
        found.push(Recorded { pid, start_ticks, cmdline });
    }
    found
}

/// `tradecast demo ARGS…` running with a `TMPDIR` of its own; its output read line by line.
struct Demo {
    child: Child,
    tmp: tempfile::TempDir,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Demo {
    fn start(args: &[&str]) -> Demo {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut child = Command::new(env!("CARGO_BIN_EXE_tradecast"))
            .arg("demo")
            .args(args)
            .env("TMPDIR", tmp.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tradecast demo");
        let (tx, lines) = mpsc::channel();
        let out = child.stdout.take().expect("stdout");
        let err = child.stderr.take().expect("stderr");
        for (stream, pipe) in
            [("out", Box::new(out) as Box<dyn std::io::Read + Send>), ("err", Box::new(err))]
        {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(format!("{stream}: {line}")).is_err() {
                        break;
                    }
                }
            });
        }
        Demo { child, tmp, lines, seen: Vec::new() }
    }

    fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("pid")
    }

    /// Takes every line still to come: the readers end at the pipes' end of file, once the
    /// demo and its children are gone (bounded, so a stuck pipe fails the test's own check).
    fn drain(&mut self) {
        let until = Instant::now() + Duration::from_secs(10);
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => return,
            }
        }
    }

    /// Waits (bounded) for a line of its standard output that contains `text`.
    fn wait_for(&mut self, text: &str, limit: Duration) {
        let until = Instant::now() + limit;
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let hit = line.starts_with("out: ") && line.contains(text);
                    self.seen.push(line);
                    if hit {
                        return;
                    }
                }
                Err(_) => break,
            }
        }
        panic!("no line with {text:?} in {limit:?}: {:#?}", self.seen);
    }

    /// The demo's children now: its hub, its three nodes and its cleaner, all running.
    fn children(&self) -> Vec<Recorded> {
        let children = children_of(self.pid());
        let count = |what: &str| children.iter().filter(|c| c.cmdline.contains(what)).count();
        assert_eq!(count(" hub --config "), 1, "{children:#?}");
        assert_eq!(count(" node run --data "), 3, "{children:#?}");
        assert_eq!(count(" clean-up "), 1, "{children:#?}");
        assert_eq!(children.len(), 5, "{children:#?}");
        children
    }

    fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.pid()), signal).expect("signal the demo");
    }

    /// Waits (bounded) for the demo to exit; its status.
    fn exit_status(&mut self) -> ExitStatus {
        let until = Instant::now() + END_LIMIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > until {
                let _ = self.child.kill();
                panic!("the demo still runs {END_LIMIT:?} after the signal: {:#?}", self.seen);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits (bounded) until none of `children` runs and the demo's `TMPDIR` is empty.
    fn assert_nothing_left(&mut self, children: &[Recorded]) {
        let until = Instant::now() + END_LIMIT;
        let left = |tmp: &std::path::Path| -> Vec<String> {
            std::fs::read_dir(tmp)
                .expect("TMPDIR")
                .flatten()
                .map(|e| e.path().display().to_string())
                .collect()
        };
        loop {
            let running: Vec<&Recorded> = children.iter().filter(|c| c.running()).collect();
            let files = left(self.tmp.path());
            if running.is_empty() && files.is_empty() {
                return;
            }
            if Instant::now() > until {
                // Leave nothing behind the failed test either.
                for c in &running {
                    let _ = kill(Pid::from_raw(c.pid), Signal::SIGKILL);
                }
                self.seen.extend(self.lines.try_iter());
                panic!(
                    "{END_LIMIT:?} after the demo ended: still running {running:#?}, still in TMPDIR {files:#?}; output {:#?}",
                    self.seen
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// SIGTERM mid-replay (`kill`, `timeout`, a service manager): stopped as by Ctrl-C — every
/// child stopped, the temporary data removed — and the demo exits with SIGTERM's status.
#[test]
fn demo_sigterm_mid_replay_stops_every_child_and_removes_the_data() {
    let mut demo = Demo::start(&["--bars", "5000", "--speed", "max"]);
    demo.wait_for("Replaying", START_LIMIT);
    let children = demo.children();
    demo.signal(Signal::SIGTERM);
    let status = demo.exit_status();
    assert_eq!(status.code(), Some(143), "{status}: {:#?}", demo.seen);
    demo.assert_nothing_left(&children);
    // The last lines may still be on their way from the reader threads.
    demo.drain();
    assert!(
        demo.seen.iter().any(|l| l.contains("stopped by SIGTERM before the replay ended")),
        "{:#?}",
        demo.seen
    );
}

/// SIGHUP once the replay is over and the pages are served (the terminal closed): the same
/// stop as Ctrl-C there, a normal end.
#[test]
fn demo_sighup_after_the_replay_stops_every_child_and_removes_the_data() {
    let mut demo = Demo::start(&["--bars", "30", "--speed", "max"]);
    // The replay, then the wait for the hub's public delay (60 s, at most 120 s) before the
    // verifier's run on the public export ends the summary.
    demo.wait_for("keep serving their pages", START_LIMIT + PUBLIC_RECORD_LIMIT);
    let children = demo.children();
    demo.signal(Signal::SIGHUP);
    let status = demo.exit_status();
    assert!(status.success(), "{status}: {:#?}", demo.seen);
    demo.assert_nothing_left(&children);
}

/// SIGKILL: nothing of the demo runs after it, yet no child outlives it (each dies by its
/// parent-death signal) and its cleaner removes the temporary data, then ends too.
#[test]
fn demo_sigkill_leaves_no_child_and_no_data() {
    use std::os::unix::process::ExitStatusExt;
    let mut demo = Demo::start(&["--bars", "5000", "--speed", "max"]);
    demo.wait_for("Replaying", START_LIMIT);
    let children = demo.children();
    demo.signal(Signal::SIGKILL);
    let status = demo.exit_status();
    assert_eq!(status.signal(), Some(9), "{status}");
    demo.assert_nothing_left(&children);
}
