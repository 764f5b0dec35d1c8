//! The copy log, newest first: every signal the policy evaluated, its steps, the decision and
//! what MT5 did with the orders made from it.

use maud::html;

use super::{PageResult, layout};
use crate::policy::fmt_utc;
use crate::runtime::Node;

/// The copy log, newest first.
pub fn copy_log(node: &Node, csrf: &str) -> PageResult {
    let mut log = node.copy_log()?;
    log.reverse();
    let approvals = node.approvals()?;
    let mut orders = Vec::new();
    for a in node.accounts()? {
        orders.extend(node.orders(&a.account)?);
    }
    let body = html! {
        section {
            h2 { "Copy log" }
            @if log.is_empty() {
                div.empty { "No signal evaluated yet." }
            } @else {
                table {
                    tr { th { "Evaluated (market clock)" } th { "Signal" } th { "Outcome" } th { "Decision" } th { "MT5" } }
                    @for e in log.iter().take(500) {
                        @let decided = approvals.iter().find(|a| a.pending.signal_id == e.signal_id).and_then(|a| a.pending.decided().cloned());
                        @let sent: Vec<_> = orders.iter().filter(|o| o.signal_id == Some(e.signal_id)).collect();
                        tr {
                            td.mute { (fmt_utc(e.at_ms)) }
                            td { (e.canonical_symbol) }
                            td class=(if e.accepted { "" } else { "down" }) {
                                (e.line)
                                details {
                                    summary { "steps" }
                                    ul.steps {
                                        @for st in &e.steps {
                                            li class=(if st.passed { "" } else { "fail" }) { (st.rule.as_str()) ": " (st.detail) }
                                        }
                                    }
                                }
                            }
                            td { @if let Some(d) = decided { (d.decision.as_str()) ": " span.mute { (d.reason) } } @else { span.warn { "waiting" } } }
                            td {
                                @for o in &sent {
                                    div { (o.state.as_str()) @if let Some(rc) = o.retcode { " · " (rc) " " span.mute { (o.explained) } } }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    layout(node, csrf, "Copy log", body)
}
