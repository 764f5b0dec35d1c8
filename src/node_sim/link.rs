//! The terminal's transport in the simulation: each EA call handed at once to the node's core
//! in this process on the simulated wall clock, with the link's faults (the node crashing before
//! or after it commits a call, duplicated and reordered deals pushes) and the sabotage switches
//! that act on the link.

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rust_decimal::Decimal;
use tradecast_node::clock::{ManualClock, MarketMs, Now, WallMs};
use tradecast_node::runtime::{CoreEvent, Node};
use tradecast_protocol::ea::{self, Call, Command};
use tradecast_sim::link::{LinkError, Transport, refused_or_body};
use tradecast_sim::terminal::Faults;

use super::Sabotage;

#[derive(Debug, Default)]
pub(super) struct LinkState {
    pub(super) node: Option<Arc<Node>>,
    /// Crash the node after it committed the next call (its answer is lost) …
    pub(super) crash_after_next_call: bool,
    /// … or before it handles the next call.
    pub(super) crash_before_next_call: bool,
    /// The next deals push is sent with the previous one's deals again.
    pub(super) duplicate_next_deals: bool,
    /// The next deals push is sent in reverse order.
    pub(super) reorder_next_deals: bool,
    pub(super) previous_deals: Vec<ea::Deal>,
    pub(super) sabotage: Option<Sabotage>,
    /// Polls the node answered.
    pub(super) polls_answered: u64,
    /// A guard trip not yet checked: the polls answered when it was seen, and whether send
    /// faults were armed then.
    pub(super) trip: Option<(u64, bool)>,
    pub(super) trips: u64,
    pub(super) crashed: bool,
    pub(super) faults: Faults,
}

/// The terminal's transport in the simulation: each call handed to the node's core at once, on
/// the simulated wall clock, with the link's faults applied.
#[derive(Debug, Clone)]
pub struct SimLink {
    pub(super) state: Arc<Mutex<LinkState>>,
    pub(super) clock: ManualClock,
}

impl SimLink {
    pub(super) fn state(&self) -> MutexGuard<'_, LinkState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn dispatch(&self, call: Call, body: Vec<u8>) -> Result<Vec<u8>, LinkError> {
        let mut st = self.state();
        let Some(node) = st.node.clone() else {
            return Err(LinkError::Transport("the node is not running".into()));
        };
        if std::mem::take(&mut st.crash_before_next_call) {
            st.node = None;
            st.crashed = true;
            return Err(LinkError::Transport("the node died".into()));
        }
        let mut body = body;
        match call {
            Call::Deals => {
                if let Ok(mut d) = ea::decode::<ea::Deals>(&body) {
                    let original = d.deals.clone();
                    if std::mem::take(&mut st.duplicate_next_deals) {
                        d.deals.extend(st.previous_deals.iter().cloned());
                        d.deals.extend(original.iter().cloned());
                    }
                    if std::mem::take(&mut st.reorder_next_deals) {
                        d.deals.reverse();
                    }
                    st.previous_deals = original;
                    body = ea::encode(&d);
                }
            }
            Call::State if st.sabotage == Some(Sabotage::SkewEquity) => {
                if let Ok(mut s) = ea::decode::<ea::State>(&body) {
                    s.equity += Decimal::ONE;
                    body = ea::encode(&s);
                }
            }
            _ => {}
        }
        let now = Now { wall_ms: WallMs(self.clock_ms()), market_ms: MarketMs(0) };
        let answer = node.handle_call(now, call, &body);
        while let Some(event) = node.poll_event() {
            if let CoreEvent::GuardTripped { .. } = event {
                st.trips += 1;
                if st.trip.is_none() {
                    st.trip = Some((st.polls_answered, st.faults.pending_send_faults() > 0));
                }
            }
        }
        if std::mem::take(&mut st.crash_after_next_call) {
            st.node = None;
            st.crashed = true;
            return Err(LinkError::Transport("the node died before it answered".into()));
        }
        let mut out = refused_or_body(answer.status, answer.body)?;
        if call == Call::Poll {
            st.polls_answered += 1;
            let drop_close = st.sabotage == Some(Sabotage::DropCloses);
            let drop_all = st.sabotage == Some(Sabotage::DropCloseAll);
            if (drop_close || drop_all)
                && let Ok(mut a) = ea::decode::<ea::PollAnswer>(&out)
            {
                a.commands.retain(|c| match c {
                    Command::Close { .. } => !drop_close,
                    Command::CloseAll { .. } => !drop_all,
                    _ => true,
                });
                out = ea::encode(&a);
            }
        }
        Ok(out)
    }

    fn clock_ms(&self) -> i64 {
        use tradecast_node::clock::Clock;
        self.clock.wall_ms()
    }
}

impl Transport for SimLink {
    fn call_bytes(
        &mut self,
        call: Call,
        body: Vec<u8>,
        _timeout: Duration,
    ) -> impl Future<Output = Result<Vec<u8>, LinkError>> + Send {
        std::future::ready(self.dispatch(call, body))
    }

    fn wall_ms(&self) -> i64 {
        self.clock_ms()
    }

    fn restart(&mut self) -> Result<(), LinkError> {
        Ok(())
    }
}

/// Runs a future that never waits (a terminal step over [`SimLink`]) to its end.
pub(super) fn run_now<F: Future>(f: F) -> Option<F::Output> {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => Some(v),
        std::task::Poll::Pending => None,
    }
}
