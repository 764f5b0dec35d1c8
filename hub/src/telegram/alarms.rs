//! The hub's alarms on Telegram: every minute the `telegram.alarms` job reads the alarms the
//! console's overview shows ([`crate::ui::overview::alarms`]: streams quarantined after an
//! equivocation, payments failing, outbox messages that gave up after their retries or are
//! overdue, commissions held, failing jobs) and tells every linked owner and admin — at their
//! "Hub alarms" level — when one appears or grows, and once when it clears. What was last told is
//! kept in `telegram_state` (`alarms.told`), written in the transaction that queues the
//! messages, so a restart neither repeats nor loses one.

use std::collections::BTreeMap;

use super::html::esc;
use super::link;
use super::notify::{self, Event, Level};
use crate::db::DbError;
use crate::state::AppState;

const TOLD: &str = "alarms.told";

/// An alarm that appeared or grew.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Raised {
    /// Its id (`quarantined`, `outbox-dead`, …).
    pub id: String,
    /// What it is.
    pub what: String,
    /// How many now.
    pub n: i64,
    /// The console page that shows it.
    pub href: String,
}

/// What changed between what was told (`before`) and what is (`now`): each alarm that appeared
/// or grew, and the ids that cleared.
pub fn changes(
    before: &BTreeMap<String, i64>,
    now: &[crate::ui::overview::Alarm],
) -> (Vec<Raised>, Vec<String>) {
    let raised = now
        .iter()
        .filter(|a| before.get(a.id).is_none_or(|n| a.n > *n))
        .map(|a| Raised {
            id: a.id.to_owned(),
            what: a.what.to_owned(),
            n: a.n,
            href: a.href.to_owned(),
        })
        .collect();
    let cleared =
        before.keys().filter(|id| !now.iter().any(|a| a.id == id.as_str())).cloned().collect();
    (raised, cleared)
}

/// One pass: `(alarms raised or grown, messages queued)`.
pub async fn tell(state: &AppState) -> Result<(usize, usize), DbError> {
    let now = state.now_ms();
    let current = crate::ui::overview::alarms(state, now).await?;
    let stored = super::state_get(&state.db, TOLD).await?;
    let before: BTreeMap<String, i64> =
        stored.as_deref().and_then(|s| serde_json::from_str(s).ok()).unwrap_or_default();
    let (raised, cleared) = changes(&before, &current);
    if raised.is_empty() && cleared.is_empty() {
        return Ok((0, 0));
    }
    let base =
        state.config.public_url.as_ref().map(|u| u.as_str().trim_end_matches('/').to_owned());
    let mut lines = Vec::new();
    for r in &raised {
        let link = base
            .as_ref()
            .map(|b| format!(" — <a href=\"{}\">open</a>", esc(&format!("{b}{}", r.href))))
            .unwrap_or_default();
        lines.push(format!("🚨 <b>{}</b> {}{link}", r.n, esc(&r.what)));
    }
    for id in &cleared {
        lines.push(format!("✅ cleared: {}", esc(id)));
    }
    let text = format!("<b>Hub alarms</b>\n{}", lines.join("\n"));
    let admins: Vec<_> = link::all(&state.db)
        .await?
        .into_iter()
        .filter(|l| l.role.is_admin() && l.blocked_at_ms.is_none())
        .collect();
    let levels = notify::levels_for(&state.db, Event::Alarm).await?;
    let told: BTreeMap<String, i64> = current.iter().map(|a| (a.id.to_owned(), a.n)).collect();
    let told_text = serde_json::to_string(&told).unwrap_or_else(|_| "{}".into());
    let mut tx = state.db.begin_write().await?;
    let mut queued = 0;
    for l in &admins {
        let level = notify::level_in(l, &levels, Event::Alarm);
        if level == Level::Off {
            continue;
        }
        let params = notify::html(l.chat_id, text.clone(), level == Level::Silent);
        let dedupe = format!("tg:alarm:{}:{}:{}", l.user_id, now, told_text.len());
        if notify::enqueue_send(&mut tx, &params, l.chat_id, &dedupe, "alarms", now).await? {
            queued += 1;
        }
    }
    super::state_set_in(&mut tx, TOLD, &told_text).await?;
    tx.commit().await?;
    if queued > 0 {
        crate::outbox::wake(state);
    }
    Ok((raised.len(), queued))
}

/// The minutely [`tell`] (skipped while the bot is off).
#[derive(Debug, Default)]
pub struct AlarmNotices;

impl crate::jobs::Job for AlarmNotices {
    fn run<'a>(
        &'a self,
        state: &'a AppState,
    ) -> futures::future::BoxFuture<'a, Result<String, String>> {
        Box::pin(async move {
            if !state.telegram.is_on() {
                return Ok("skipped: Telegram is off".into());
            }
            let (raised, queued) = tell(state).await.map_err(|e| e.to_string())?;
            Ok(format!("{raised} alarms raised, {queued} messages queued"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ui::overview::Alarm;

    fn alarm(id: &'static str, n: i64) -> Alarm {
        Alarm { id, n, what: "w", href: "/x" }
    }

    #[test]
    fn told_when_raised_or_grown_and_once_when_cleared() {
        let before: BTreeMap<String, i64> = [("outbox-dead".to_string(), 2)].into();
        let (raised, cleared) = changes(&before, &[alarm("outbox-dead", 2)]);
        assert!(raised.is_empty() && cleared.is_empty(), "unchanged: nothing");
        let (raised, _) = changes(&before, &[alarm("outbox-dead", 3), alarm("quarantined", 1)]);
        assert_eq!(
            raised.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            ["outbox-dead", "quarantined"]
        );
        let (raised, _) = changes(&before, &[alarm("outbox-dead", 1)]);
        assert!(raised.is_empty(), "fewer is not news");
        let (_, cleared) = changes(&before, &[]);
        assert_eq!(cleared, ["outbox-dead"]);
    }
}
