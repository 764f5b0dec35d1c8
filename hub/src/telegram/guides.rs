//! Guides and scheduled tips (migration 0023): the owner's own content in the bot.
//!
//! - **Guides** ("How to connect MetaTrader 5", "What the drawdown cap does") are titled texts
//!   the owner writes on the console's Broadcasts page. `/guides` answers with one button per
//!   guide (`g:<id>`); a press sends that guide to the chat. Plain text, escaped when sent.
//! - **Scheduled tips** are texts sent to a segment (as broadcasts are: every linked account,
//!   paying, trial, expired, a plan's holders) on a schedule in the owner's time zone:
//!   `daily 09:00`, `weekdays 08:30` or `weekly mon 18:00`, computed with the IANA database
//!   (a summer-time change moves nothing: 09:00 stays 09:00 local). The [`TipSender`] job, every
//!   minute, sends each due tip once (one outbox row per recipient, keyed by the tip and its due
//!   time) and sets its next time from now: a hub that was down for a week sends a missed tip
//!   once, not seven times. Accounts that turned "News and offers" off, or blocked the bot, get
//!   nothing.

use frankenstein::types::{InlineKeyboardButton, InlineKeyboardMarkup, ReplyMarkup};
use jiff::civil::{Time, Weekday};
use jiff::tz::TimeZone;
use sqlx::Row;

use super::broadcast::Segment;
use super::html::esc;
use super::notify::{self, Event, Level};
use crate::audit::{self, Entry};
use crate::db::{Db, DbError};
use crate::error::ApiError;
use crate::state::AppState;

/// A guide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guide {
    /// Our id (32 hex: `g:<id>` fits a button's 64 bytes).
    pub id: String,
    /// Its title (the button).
    pub title: String,
    /// Its text.
    pub body: String,
    /// Order in `/guides` (ascending).
    pub position: i64,
}

/// Every guide, in order.
pub async fn list(db: &Db) -> Result<Vec<Guide>, DbError> {
    let rows = sqlx::query(
        "SELECT id, title, body, position FROM telegram_guides ORDER BY position, title",
    )
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Guide {
                id: r.try_get(0)?,
                title: r.try_get(1)?,
                body: r.try_get(2)?,
                position: r.try_get(3)?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(DbError::from)
}

/// One guide.
pub async fn get(db: &Db, id: &str) -> Result<Option<Guide>, DbError> {
    Ok(list(db).await?.into_iter().find(|g| g.id == id))
}

fn check_text(what: &str, text: &str, max: usize) -> Result<(), ApiError> {
    if text.trim().is_empty() || text.chars().count() > max {
        return Err(ApiError::Validation(format!("the {what} must be 1-{max} characters")));
    }
    Ok(())
}

async fn audited(
    state: &AppState,
    tx: &mut crate::feed::Tx,
    actor: &str,
    action: &str,
    subject: &str,
    detail: serde_json::Value,
    request_id: &str,
) -> Result<(), DbError> {
    let entry = Entry { actor, action, subject, detail, request_id };
    audit::append(tx, state.db.backend(), state.now_ms(), &entry).await.map(|_| ())
}

/// Adds a guide (audited `telegram.guide.create`).
pub async fn add(
    state: &AppState,
    actor: &str,
    title: &str,
    body: &str,
    position: i64,
    request_id: &str,
) -> Result<Guide, ApiError> {
    check_text("title", title, 60)?;
    check_text("text", body, 3_500)?;
    let g = Guide {
        id: crate::ids::new_id(),
        title: title.trim().to_owned(),
        body: body.trim().to_owned(),
        position,
    };
    let now = state.now_ms();
    let mut tx = state.db.begin_write().await?;
    sqlx::query(
        "INSERT INTO telegram_guides (id, title, body, position, created_by, created_at_ms, updated_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $6)",
    )
    .bind(&g.id)
    .bind(&g.title)
    .bind(&g.body)
    .bind(g.position)
    .bind(actor)
    .bind(now)
    .execute(&mut *tx)
    .await
    .map_err(DbError::from)?;
    let detail = serde_json::json!({ "title": g.title });
    audited(state, &mut tx, actor, "telegram.guide.create", &g.id, detail, request_id).await?;
    tx.commit().await.map_err(DbError::from)?;
    Ok(g)
}

/// Deletes a guide (audited `telegram.guide.delete`); `false` when there is none.
pub async fn delete(
    state: &AppState,
    actor: &str,
    id: &str,
    request_id: &str,
) -> Result<bool, ApiError> {
    delete_row(state, actor, "telegram_guides", "telegram.guide.delete", id, request_id).await
}

async fn delete_row(
    state: &AppState,
    actor: &str,
    table: &'static str,
    action: &str,
    id: &str,
    request_id: &str,
) -> Result<bool, ApiError> {
    let mut tx = state.db.begin_write().await?;
    let sql = match table {
        "telegram_guides" => "DELETE FROM telegram_guides WHERE id = $1",
        _ => "DELETE FROM telegram_tips WHERE id = $1",
    };
    let n =
        sqlx::query(sql).bind(id).execute(&mut *tx).await.map_err(DbError::from)?.rows_affected();
    if n == 0 {
        return Ok(false);
    }
    audited(state, &mut tx, actor, action, id, serde_json::json!({}), request_id).await?;
    tx.commit().await.map_err(DbError::from)?;
    Ok(true)
}

/// `/guides`' answer: the list and one button per guide.
pub fn menu(chat_id: i64, guides: &[Guide]) -> frankenstein::methods::SendMessageParams {
    if guides.is_empty() {
        return notify::html(chat_id, "No guide yet.".into(), false);
    }
    let mut params =
        notify::html(chat_id, "<b>Guides</b>\nPick one to read it here.".into(), false);
    let rows = guides
        .iter()
        .map(|g| {
            vec![
                InlineKeyboardButton::builder()
                    .text(g.title.clone())
                    .callback_data(format!("g:{}", g.id))
                    .build(),
            ]
        })
        .collect();
    params.reply_markup = Some(ReplyMarkup::InlineKeyboardMarkup(
        InlineKeyboardMarkup::builder().inline_keyboard(rows).build(),
    ));
    params
}

/// A guide as a message.
pub fn message(chat_id: i64, g: &Guide) -> frankenstein::methods::SendMessageParams {
    notify::html(chat_id, format!("<b>{}</b>\n\n{}", esc(&g.title), esc(&g.body)), false)
}

/// When a tip is sent, in its time zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    /// Every day at this time.
    Daily(Time),
    /// Monday to Friday at this time.
    Weekdays(Time),
    /// One day a week at this time.
    Weekly(Weekday, Time),
}

const DAYS: [(&str, Weekday); 7] = [
    ("mon", Weekday::Monday),
    ("tue", Weekday::Tuesday),
    ("wed", Weekday::Wednesday),
    ("thu", Weekday::Thursday),
    ("fri", Weekday::Friday),
    ("sat", Weekday::Saturday),
    ("sun", Weekday::Sunday),
];

fn parse_time(s: &str) -> Option<Time> {
    let (h, m) = s.split_once(':')?;
    let (h, m): (i8, i8) = (h.parse().ok()?, m.parse().ok()?);
    ((0..24).contains(&h) && (0..60).contains(&m) && s.len() == 5)
        .then(|| jiff::civil::time(h, m, 0, 0))
}

impl Schedule {
    /// Parses `daily HH:MM`, `weekdays HH:MM` or `weekly DAY HH:MM` (DAY: mon … sun).
    pub fn parse(text: &str) -> Result<Schedule, String> {
        let words: Vec<String> = text.split_whitespace().map(str::to_ascii_lowercase).collect();
        let bad =
            || format!("`{text}`: write `daily 09:00`, `weekdays 08:30` or `weekly mon 18:00`");
        match words.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
            ["daily", t] => parse_time(t).map(Schedule::Daily).ok_or_else(bad),
            ["weekdays", t] => parse_time(t).map(Schedule::Weekdays).ok_or_else(bad),
            ["weekly", d, t] => {
                let day = DAYS.iter().find(|(n, _)| n == d).map(|(_, w)| *w).ok_or_else(bad)?;
                parse_time(t).map(|t| Schedule::Weekly(day, t)).ok_or_else(bad)
            }
            _ => Err(bad()),
        }
    }

    /// The stored text.
    pub fn as_text(&self) -> String {
        let hm = |t: &Time| format!("{:02}:{:02}", t.hour(), t.minute());
        match self {
            Schedule::Daily(t) => format!("daily {}", hm(t)),
            Schedule::Weekdays(t) => format!("weekdays {}", hm(t)),
            Schedule::Weekly(d, t) => {
                let day = DAYS.iter().find(|(_, w)| w == d).map_or("mon", |(n, _)| n);
                format!("weekly {day} {}", hm(t))
            }
        }
    }

    fn on(&self, day: Weekday) -> bool {
        match self {
            Schedule::Daily(_) => true,
            Schedule::Weekdays(_) => !matches!(day, Weekday::Saturday | Weekday::Sunday),
            Schedule::Weekly(d, _) => *d == day,
        }
    }

    fn time(&self) -> Time {
        match self {
            Schedule::Daily(t) | Schedule::Weekdays(t) | Schedule::Weekly(_, t) => *t,
        }
    }

    /// The first time strictly after `after_ms` (unix ms) it falls on, in `tz`.
    pub fn next_after(&self, after_ms: i64, tz: &TimeZone) -> Option<i64> {
        let ts = jiff::Timestamp::from_millisecond(after_ms).ok()?;
        let mut day = tz.to_datetime(ts).date();
        for _ in 0..9 {
            if self.on(day.weekday()) {
                let at = tz.to_zoned_datetime(day.to_datetime(self.time())).ok()?;
                let ms = at.timestamp().as_millisecond();
                if ms > after_ms {
                    return Some(ms);
                }
            }
            day = day.tomorrow().ok()?;
        }
        None
    }
}

/// A scheduled tip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tip {
    /// Our id.
    pub id: String,
    /// The text.
    pub body: String,
    /// As stored (`daily 09:00`).
    pub schedule: String,
    /// IANA name (`Europe/London`).
    pub time_zone: String,
    /// Who gets it, as a broadcast's segment text.
    pub segment: String,
    /// Whether it is sent.
    pub enabled: bool,
    /// When next.
    pub next_run_at_ms: i64,
    /// When last sent.
    pub last_sent_at_ms: Option<i64>,
    /// Messages queued over its life.
    pub sent: i64,
}

/// Every tip, by next run.
pub async fn tips(db: &Db) -> Result<Vec<Tip>, DbError> {
    let rows = sqlx::query(
        "SELECT id, body, schedule, time_zone, segment, enabled, next_run_at_ms, last_sent_at_ms, sent \
         FROM telegram_tips ORDER BY next_run_at_ms, id",
    )
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Tip {
                id: r.try_get(0)?,
                body: r.try_get(1)?,
                schedule: r.try_get(2)?,
                time_zone: r.try_get(3)?,
                segment: r.try_get(4)?,
                enabled: r.try_get::<i64, _>(5)? != 0,
                next_run_at_ms: r.try_get(6)?,
                last_sent_at_ms: r.try_get(7)?,
                sent: r.try_get(8)?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(DbError::from)
}

/// Adds a tip (audited `telegram.tip.create`): text, schedule, IANA time zone, segment.
pub async fn add_tip(
    state: &AppState,
    actor: &str,
    body: &str,
    schedule: &str,
    time_zone: &str,
    segment: &str,
    request_id: &str,
) -> Result<Tip, ApiError> {
    check_text("text", body, 3_500)?;
    let sched = Schedule::parse(schedule).map_err(ApiError::Validation)?;
    let tz = TimeZone::get(time_zone.trim()).map_err(|_| {
        ApiError::Validation(format!("`{time_zone}` is not a time zone (e.g. Europe/London)"))
    })?;
    let seg =
        Segment::parse(segment).ok_or_else(|| ApiError::Validation("choose who gets it".into()))?;
    let now = state.now_ms();
    let next = sched
        .next_after(now, &tz)
        .ok_or_else(|| ApiError::Validation("that schedule never falls".into()))?;
    let tip = Tip {
        id: crate::ids::new_id(),
        body: body.trim().to_owned(),
        schedule: sched.as_text(),
        time_zone: time_zone.trim().to_owned(),
        segment: seg.as_text(),
        enabled: true,
        next_run_at_ms: next,
        last_sent_at_ms: None,
        sent: 0,
    };
    let mut tx = state.db.begin_write().await?;
    sqlx::query(
        "INSERT INTO telegram_tips (id, body, schedule, time_zone, segment, enabled, next_run_at_ms, \
         sent, created_by, created_at_ms) VALUES ($1, $2, $3, $4, $5, 1, $6, 0, $7, $8)",
    )
    .bind(&tip.id)
    .bind(&tip.body)
    .bind(&tip.schedule)
    .bind(&tip.time_zone)
    .bind(&tip.segment)
    .bind(tip.next_run_at_ms)
    .bind(actor)
    .bind(now)
    .execute(&mut *tx)
    .await
    .map_err(DbError::from)?;
    let detail = serde_json::json!({
        "schedule": tip.schedule, "time_zone": tip.time_zone, "segment": tip.segment,
    });
    audited(state, &mut tx, actor, "telegram.tip.create", &tip.id, detail, request_id).await?;
    tx.commit().await.map_err(DbError::from)?;
    Ok(tip)
}

/// Deletes a tip (audited `telegram.tip.delete`); `false` when there is none.
pub async fn delete_tip(
    state: &AppState,
    actor: &str,
    id: &str,
    request_id: &str,
) -> Result<bool, ApiError> {
    delete_row(state, actor, "telegram_tips", "telegram.tip.delete", id, request_id).await
}

/// Sends the due tips: every minute.
#[derive(Debug, Default)]
pub struct TipSender;

impl crate::jobs::Job for TipSender {
    fn run<'a>(
        &'a self,
        state: &'a AppState,
    ) -> futures::future::BoxFuture<'a, Result<String, String>> {
        Box::pin(async move {
            if !state.telegram.is_on() {
                return Ok("skipped: Telegram is off".into());
            }
            let (tips, queued) = send_due(state).await.map_err(|e| e.to_string())?;
            Ok(format!("{tips} tips due, {queued} messages queued"))
        })
    }
}

/// One pass of [`TipSender`]: `(tips sent, messages queued)`. Each due tip is sent and moved to
/// its next time in one transaction.
pub async fn send_due(state: &AppState) -> Result<(usize, usize), DbError> {
    let now = state.now_ms();
    let due: Vec<Tip> = tips(&state.db)
        .await?
        .into_iter()
        .filter(|t| t.enabled && t.next_run_at_ms <= now)
        .collect();
    let stored = notify::levels_for(&state.db, Event::News).await?;
    let mut queued = 0;
    for tip in &due {
        let next = Schedule::parse(&tip.schedule)
            .ok()
            .zip(TimeZone::get(&tip.time_zone).ok())
            .and_then(|(s, tz)| s.next_after(now, &tz));
        let recipients = match Segment::parse(&tip.segment) {
            Some(seg) => super::broadcast::members(state, &seg).await?,
            None => Vec::new(),
        };
        let mut tx = state.db.begin_write().await?;
        let mut n = 0;
        for l in &recipients {
            let level = notify::level_in(l, &stored, Event::News);
            if level == Level::Off {
                continue;
            }
            let params = notify::html(l.chat_id, esc(&tip.body), level == Level::Silent);
            let dedupe = format!("tg:tip:{}:{}:{}", tip.id, tip.next_run_at_ms, l.user_id);
            if notify::enqueue_send(
                &mut tx,
                &params,
                l.chat_id,
                &dedupe,
                &format!("tip:{}", tip.id),
                now,
            )
            .await?
            {
                n += 1;
            }
        }
        // A schedule that no longer parses (a time zone removed from the database) stops.
        sqlx::query(
            "UPDATE telegram_tips SET next_run_at_ms = $1, enabled = $2, last_sent_at_ms = $3, \
             sent = sent + $4 WHERE id = $5",
        )
        .bind(next.unwrap_or(tip.next_run_at_ms))
        .bind(i64::from(next.is_some()))
        .bind(now)
        .bind(i64::try_from(n).unwrap_or(i64::MAX))
        .bind(&tip.id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        queued += n;
    }
    if queued > 0 {
        crate::outbox::wake(state);
    }
    Ok((due.len(), queued))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> i64 {
        s.parse::<jiff::Timestamp>().unwrap().as_millisecond()
    }

    #[test]
    fn schedules_parse_and_print() {
        for s in ["daily 09:00", "weekdays 08:30", "weekly mon 18:00", "weekly sun 00:05"] {
            assert_eq!(Schedule::parse(s).unwrap().as_text(), s);
        }
        assert_eq!(Schedule::parse("  Weekly  FRI 07:45 ").unwrap().as_text(), "weekly fri 07:45");
        for bad in ["", "daily", "daily 9:00", "daily 24:00", "hourly 10:00", "weekly xyz 10:00"] {
            assert!(Schedule::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn next_times_follow_the_local_clock_across_summer_time() {
        let london = TimeZone::get("Europe/London").unwrap();
        let daily = Schedule::parse("daily 09:00").unwrap();
        // Winter: 09:00 GMT = 09:00Z; summer: 09:00 BST = 08:00Z.
        assert_eq!(
            daily.next_after(ms("2026-12-06T10:00:00Z"), &london),
            Some(ms("2026-12-07T09:00:00Z"))
        );
        assert_eq!(
            daily.next_after(ms("2026-12-06T08:59:59Z"), &london),
            Some(ms("2026-12-06T09:00:00Z"))
        );
        assert_eq!(
            daily.next_after(ms("2026-03-28T10:00:00Z"), &london),
            Some(ms("2026-03-29T08:00:00Z"))
        );
        // Strictly after: at the instant itself, the next day.
        assert_eq!(
            daily.next_after(ms("2026-12-06T09:00:00Z"), &london),
            Some(ms("2026-12-07T09:00:00Z"))
        );
        // 2026-12-05 is a Saturday: weekdays skip to Monday.
        let weekdays = Schedule::parse("weekdays 08:30").unwrap();
        let ny = TimeZone::get("America/New_York").unwrap();
        assert_eq!(
            weekdays.next_after(ms("2026-12-05T12:00:00Z"), &ny),
            Some(ms("2026-12-07T13:30:00Z"))
        );
        let weekly = Schedule::parse("weekly mon 18:00").unwrap();
        assert_eq!(
            weekly.next_after(ms("2026-12-07T23:00:01Z"), &ny),
            Some(ms("2026-12-14T23:00:00Z"))
        );
    }
}
