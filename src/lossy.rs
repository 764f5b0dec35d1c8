//! A UDP proxy on loopback that drops, delays and duplicates datagrams: the bad network between
//! the nodes and the hub in the demo's fault runs and the end-to-end tests. QUIC sees real loss,
//! reordering and duplicates; the sync session above it must lose and duplicate nothing.
//!
//! Each client address gets its own upstream socket (so the hub sees one peer per client, as
//! through a NAT); both directions go through the same faults. Randomness is seeded, so a run's
//! fault pattern is reproducible up to the OS's scheduling.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::UdpSocket;

/// What the proxy does to each datagram.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Faults {
    /// Percent of datagrams dropped, each direction.
    pub drop_pct: u32,
    /// Percent of datagrams sent twice.
    pub duplicate_pct: u32,
    /// Each datagram is held up to this long (uniform), which also reorders them.
    pub max_delay_ms: u64,
    /// Seed of the fault pattern.
    pub seed: u64,
}

impl Default for Faults {
    fn default() -> Self {
        Faults { drop_pct: 5, duplicate_pct: 3, max_delay_ms: 20, seed: 1 }
    }
}

/// Counts of what the proxy did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub forwarded: u64,
    pub dropped: u64,
    pub duplicated: u64,
}

/// A running proxy.
#[derive(Debug)]
pub struct Proxy {
    /// Where clients send (instead of the upstream's address).
    pub addr: SocketAddr,
    counts: Arc<Mutex<Counts>>,
    task: tokio::task::JoinHandle<()>,
    children: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Proxy {
    /// What it did so far.
    pub fn counts(&self) -> Counts {
        *self.counts.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        for c in self.children.lock().unwrap_or_else(std::sync::PoisonError::into_inner).drain(..) {
            c.abort();
        }
    }
}

/// xorshift64*: small, seeded, good enough for a fault pattern.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn pct(&mut self, pct: u32) -> bool {
        self.next() % 100 < u64::from(pct)
    }
}

struct Shared {
    faults: Faults,
    rng: Mutex<Rng>,
    counts: Arc<Mutex<Counts>>,
}

impl Shared {
    /// Sends `bytes` on `socket` to `to` (or its connected peer) under the faults.
    fn send(self: &Arc<Self>, socket: Arc<UdpSocket>, to: Option<SocketAddr>, bytes: Vec<u8>) {
        let (drop, dup, delays) = {
            let mut rng = self.rng.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let drop = rng.pct(self.faults.drop_pct);
            let dup = rng.pct(self.faults.duplicate_pct);
            let span = self.faults.max_delay_ms + 1;
            (drop, dup, [rng.next() % span, rng.next() % span])
        };
        {
            let mut c = self.counts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if drop {
                c.dropped += 1;
                return;
            }
            c.forwarded += 1;
            c.duplicated += u64::from(dup);
        }
        let copies = if dup { 2 } else { 1 };
        for delay in delays.into_iter().take(copies) {
            let (socket, bytes) = (socket.clone(), bytes.clone());
            tokio::spawn(async move {
                if delay > 0 {
                    tokio::time::sleep(Duration::from_millis(delay)).await;
                }
                let _ = match to {
                    Some(to) => socket.send_to(&bytes, to).await,
                    None => socket.send(&bytes).await,
                };
            });
        }
    }
}

/// Starts a proxy on 127.0.0.1 in front of `upstream`.
pub async fn start(upstream: SocketAddr, faults: Faults) -> std::io::Result<Proxy> {
    let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
    let addr = front.local_addr()?;
    let counts = Arc::new(Mutex::new(Counts::default()));
    let shared = Arc::new(Shared {
        faults,
        rng: Mutex::new(Rng(faults.seed.max(1))),
        counts: counts.clone(),
    });
    let children: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
    let kids = children.clone();
    let task = tokio::spawn(async move {
        let mut clients: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
        let mut buf = vec![0u8; 65_535];
        loop {
            let Ok((n, from)) = front.recv_from(&mut buf).await else {
                tokio::time::sleep(Duration::from_millis(1)).await;
                continue;
            };
            let back = match clients.get(&from) {
                Some(s) => s.clone(),
                None => {
                    let Ok(s) = UdpSocket::bind("127.0.0.1:0").await else { continue };
                    if s.connect(upstream).await.is_err() {
                        continue;
                    }
                    let s = Arc::new(s);
                    clients.insert(from, s.clone());
                    // Upstream → this client.
                    let (s2, front2, shared2) = (s.clone(), front.clone(), shared.clone());
                    let child = tokio::spawn(async move {
                        let mut buf = vec![0u8; 65_535];
                        loop {
                            match s2.recv(&mut buf).await {
                                Ok(n) => {
                                    shared2.send(front2.clone(), Some(from), buf[..n].to_vec())
                                }
                                // The upstream is down (ICMP unreachable): it may come back.
                                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                            }
                        }
                    });
                    kids.lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .push(child.abort_handle());
                    s
                }
            };
            shared.send(back, None, buf[..n].to_vec());
        }
    });
    Ok(Proxy { addr, counts, task, children })
}
