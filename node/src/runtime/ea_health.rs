//! The EA link's health, told to the hub: when MetaTrader's Expert Advisor stops polling the node
//! (no authenticated call for `link_down_after_s`) and when it is back, the node signs a
//! `Heartbeat` into its `DEVICE` stream. The hub tells the trader on Telegram once the EA has
//! been silent for a while (signals arrive but cannot be executed), and once when it is back.
//!
//! Only changes are signed — a stable link writes nothing — and the last state signed is kept
//! in the store (`ea_link.reported`), so a restart does not sign the same state again. The
//! serving loop looks every few seconds (`serve::watch_ea_link`).

use tradecast_protocol::{Body, Heartbeat, StreamId};

use super::{Node, NodeError};

/// The setting holding the EA link state last signed (`up` or `down`).
pub const EA_LINK_REPORTED: &str = "ea_link.reported";

impl Node {
    /// Signs a `Heartbeat` when the EA link's state at `now_ms` differs from the last one
    /// signed; returns whether it signed one.
    pub fn report_ea_link(&self, now_ms: i64) -> Result<bool, NodeError> {
        let up = self.link_up(now_ms);
        let state = if up { "up" } else { "down" };
        let beat = Heartbeat {
            device: self.device_id(),
            at_ms: now_ms,
            ea_connected: up,
            terminal_time_ms: None,
        };
        let signed = self.store.write(|tx| {
            if tx.setting(EA_LINK_REPORTED)?.as_deref() == Some(state) {
                return Ok(false);
            }
            tx.append_record(&self.identity, StreamId::DEVICE, &Body::Heartbeat(beat), now_ms)?;
            tx.set_setting(EA_LINK_REPORTED, state)?;
            Ok(true)
        })?;
        if signed {
            tracing::info!(target: "tradecast::node", ea_connected = up, "EA link state signed for the hub");
            // The sync client sends it now rather than at its next tip poll.
            self.work.send_modify(|v| *v = v.wrapping_add(1));
        }
        Ok(signed)
    }
}

#[cfg(test)]
mod tests {
    use tradecast_protocol::{Body, Kind, StreamId};

    use super::EA_LINK_REPORTED;
    use crate::runtime::tests::in_memory_node;

    /// The heartbeats on the DEVICE stream: whether each says the EA is connected.
    fn beats(node: &crate::runtime::Node) -> Vec<bool> {
        let records = node.store().read().expect("view").outbox(StreamId::DEVICE).expect("outbox");
        records
            .iter()
            .filter(|r| r.header().kind == Kind::Heartbeat)
            .map(|r| match r.body() {
                Ok(Body::Heartbeat(h)) => h.ea_connected,
                other => panic!("not a heartbeat: {other:?}"),
            })
            .collect()
    }

    #[test]
    fn only_changes_of_the_ea_link_are_signed() {
        let node = in_memory_node();
        let limit = node.settings().link_down_after_ms;
        // Never seen: down, signed once however often it is looked at.
        assert!(node.report_ea_link(limit).expect("report"));
        assert!(!node.report_ea_link(limit + 5_000).expect("report"));
        assert_eq!(beats(&node), [false]);
        // The EA polls: up, once.
        let t = 100_000;
        node.seen(t);
        assert!(node.report_ea_link(t + 1).expect("report"));
        node.seen(t + 4_000);
        assert!(!node.report_ea_link(t + 5_000).expect("report"));
        // Silent past the limit: down again.
        assert!(node.report_ea_link(t + 4_000 + limit).expect("report"));
        assert_eq!(beats(&node), [false, true, false]);
        // The state signed is kept (a restarted node does not sign it again).
        let kept = node.store().read().expect("view").setting(EA_LINK_REPORTED).expect("setting");
        assert_eq!(kept.as_deref(), Some("down"));
        // Each heartbeat is the node's own, signed and chained on its DEVICE stream.
        let records = node.store().read().expect("view").outbox(StreamId::DEVICE).expect("outbox");
        for r in &records {
            r.verify(&node.identity_key()).expect("signed by the node");
        }
    }
}
