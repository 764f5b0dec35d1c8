//! The node's core, sans-IO: every call of the EA link as a synchronous `handle_*(now, input)
//! -> answer` that commits before it returns, and [`Node::poll_event`] for what the driver must
//! do next. No socket, no tokio, no clock here: the time comes in as a [`Now`] (or from the
//! [`crate::clock::Clock`] the node was built with), ids from its [`crate::clock::IdSource`]. The
//! driver ([`super`]'s long-poll, [`crate::link`]'s HTTP) and the simulation
//! (`tradecast::node_sim`) call the same functions.
//!
//! Of a [`Now`], the core reads `wall_ms` (record stamps, the re-offer delay, created and
//! filled times); the market clock it uses is the terminal time each EA body carries (expiry,
//! backoffs, equity minutes, the guard's server day), so `market_ms` is the caller's note of it.
//!
//! The core files of `runtime/` (this one, `ack`, `offer`, `reconcile`, `guard`, `bars`,
//! `ea_session`, `provider`, `status`, `rows`, `mt5`) import no tokio and read no clock; a
//! workspace test (`tests/workspace`) checks it.

use std::collections::BTreeMap;

use tradecast_protocol::ea::{self, Call, Problem};

use crate::clock::Now;

use super::{Node, NodeError};

/// What the driver must do after a change the core committed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CoreEvent {
    /// Something a waiting poll (or the UI) should see was committed: wake them.
    Wake,
    /// The drawdown guard or the daily loss limit tripped on this account: auto mode is locked
    /// and a close-all is due (the reason in the trader's words).
    GuardTripped {
        /// `login@server`.
        account: String,
        /// Why.
        reason: String,
    },
}

/// The events not yet taken, coalesced: bounded by the number of accounts whatever happens
/// while no one takes them (a serving node's driver wakes its polls directly).
#[derive(Debug, Default)]
pub(super) struct Events {
    pub(super) wake: bool,
    pub(super) tripped: BTreeMap<String, String>,
}

/// One answer of [`Node::handle_call`]: the HTTP status, the JSON body, and whether it is a
/// problem+json body.
#[derive(Debug, Clone)]
pub struct CallAnswer {
    /// 200, or the problem's status.
    pub status: u16,
    /// The encoded answer or problem.
    pub body: Vec<u8>,
    /// Whether `body` is a problem.
    pub problem: bool,
}

impl CallAnswer {
    fn ok<T: serde::Serialize>(value: &T) -> CallAnswer {
        CallAnswer { status: 200, body: ea::encode(value), problem: false }
    }

    fn problem(p: &Problem) -> CallAnswer {
        CallAnswer { status: p.status, body: ea::encode(p), problem: true }
    }
}

impl NodeError {
    /// The problem the EA link answers for this error (status and code, ea-link.md).
    pub fn link_problem(&self) -> Problem {
        match self {
            NodeError::HelloRequired(_) => {
                Problem::new(409, ea::PROBLEM_HELLO_REQUIRED, "hello required", self.to_string())
            }
            NodeError::AnotherEa { .. } => {
                Problem::new(409, ea::PROBLEM_ANOTHER_EA, "another EA polls", self.to_string())
            }
            NodeError::PollInFlight => {
                Problem::new(409, "poll-in-flight", "poll in flight", self.to_string())
            }
            NodeError::UnknownOrder(_) => {
                Problem::new(404, "unknown-order", "unknown order", self.to_string())
            }
            NodeError::Refused(_)
            | NodeError::UnknownSignal(_)
            | NodeError::Decision(_)
            | NodeError::Policy(_) => Problem::new(422, "refused", "refused", self.to_string()),
            NodeError::Store(_) | NodeError::Key(_) => {
                tracing::error!(target: "tradecast::link", error = %self, "link call failed");
                Problem::new(
                    500,
                    "internal",
                    "internal error",
                    "the node could not commit this; retry",
                )
            }
        }
    }
}

impl Node {
    /// The next thing the driver must do, if any (each pending event once).
    pub fn poll_event(&self) -> Option<CoreEvent> {
        let mut ev = self.events.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((account, reason)) = ev.tripped.pop_first() {
            return Some(CoreEvent::GuardTripped { account, reason });
        }
        if std::mem::take(&mut ev.wake) {
            return Some(CoreEvent::Wake);
        }
        None
    }

    pub(super) fn note_guard_trip(&self, account: &str, reason: &str) {
        let mut ev = self.events.lock().unwrap_or_else(|p| p.into_inner());
        ev.tripped.insert(account.to_owned(), reason.to_owned());
    }

    /// `hello`: a new session for the account.
    pub fn handle_hello(&self, now: Now, h: ea::Hello) -> Result<ea::HelloAnswer, NodeError> {
        self.hello(h, now.wall_ms.0)
    }

    /// `poll`, without waiting: what is due now for the session, marked sent before it is
    /// returned (the driver's long-poll calls this again on each wake until its deadline).
    pub fn handle_poll(&self, now: Now, p: &ea::Poll) -> Result<ea::PollAnswer, NodeError> {
        let account = {
            let inner = self.lock();
            self.session_account(&inner, &p.session_id)?
        };
        self.take_due(&account, &p.session_id, p.terminal_time_ms, now.wall_ms.0)
    }

    /// `ack`: how an order ended.
    pub fn handle_ack(&self, now: Now, a: ea::Ack) -> Result<ea::AckAnswer, NodeError> {
        self.ack(a, now.wall_ms.0)
    }

    /// `state`: the account and its book, reconciled; the guard.
    pub fn handle_state(&self, now: Now, s: ea::State) -> Result<ea::StateAnswer, NodeError> {
        self.state(s, now.wall_ms.0)
    }

    /// `deals`: deals since the cursor.
    pub fn handle_deals(&self, now: Now, d: ea::Deals) -> Result<ea::DealsAnswer, NodeError> {
        self.deals(d, now.wall_ms.0)
    }

    /// `bars`: closed bars since the cursors (provider mode feeds its engine).
    pub fn handle_bars(&self, now: Now, b: ea::Bars) -> Result<ea::BarsAnswer, NodeError> {
        self.bars(b, now.wall_ms.0)
    }

    /// A trader's (or a relayed) decision on a waiting signal ([`Node::decide`], in the
    /// signal-intake module, which still reads the wall clock itself: the fan-out work owns it).
    pub fn handle_decision(
        &self,
        signal_hex: &str,
        request: &crate::policy::approval::DecisionRequest,
    ) -> Result<tradecast_protocol::Approval, NodeError> {
        self.decide(signal_hex, request)
    }

    /// A signal handed in through the local API ([`Node::submit_signal`], in the signal-intake
    /// module, which still reads the wall clock itself).
    pub fn handle_submitted_signal(
        &self,
        account: &str,
        signal: tradecast_protocol::Signal,
        execute: bool,
        volume: Option<rust_decimal::Decimal>,
    ) -> Result<super::SignalRow, NodeError> {
        self.submit_signal(account, signal, execute, volume)
    }

    /// One authenticated EA call by its path's [`Call`] and JSON body, answered without
    /// waiting (a poll answers at once): the link's dispatch, for a driver that has already
    /// checked the request's signature, stamp and nonce.
    pub fn handle_call(&self, now: Now, call: Call, body: &[u8]) -> CallAnswer {
        fn run<Req: serde::de::DeserializeOwned, Ans: serde::Serialize>(
            body: &[u8],
            f: impl FnOnce(Req) -> Result<Ans, NodeError>,
        ) -> CallAnswer {
            match ea::decode::<Req>(body) {
                Ok(req) => match f(req) {
                    Ok(a) => CallAnswer::ok(&a),
                    Err(e) => CallAnswer::problem(&e.link_problem()),
                },
                Err(e) => CallAnswer::problem(&Problem::from_body_error(&e)),
            }
        }
        match call {
            Call::Hello => run(body, |h| self.handle_hello(now, h)),
            Call::Poll => run(body, |p: ea::Poll| self.handle_poll(now, &p)),
            Call::Ack => run(body, |a| self.handle_ack(now, a)),
            Call::State => run(body, |s| self.handle_state(now, s)),
            Call::Deals => run(body, |d| self.handle_deals(now, d)),
            Call::Bars => run(body, |b| self.handle_bars(now, b)),
        }
    }
}
