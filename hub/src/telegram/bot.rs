//! The Bot API client (frankenstein's async reqwest client at `{api_base_url}/bot{token}`) and
//! the outbox's Telegram deliverer.
//!
//! Messages are stored in the outbox as `{"method": "sendMessage", "params": {…}}`, built from
//! frankenstein's typed parameters (so a malformed message cannot be enqueued) and sent through
//! its generic `request`. The token is part of the URL only: frankenstein strips URLs from its
//! HTTP errors, and nothing here formats the client.

use std::time::Duration;

use frankenstein::AsyncTelegramApi;
use frankenstein::client_reqwest::Bot as Client;
use futures::future::BoxFuture;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde_json::Value;

use crate::outbox::{Deliver, Message, Outcome};
use crate::state::AppState;

/// A Bot API call that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// Telegram answered with an error (`error_code`, `description`, `retry_after` on 429).
    #[error("telegram {code}: {description}")]
    Api {
        /// Telegram's `error_code` (400, 403, 429, …).
        code: u64,
        /// Telegram's `description`.
        description: String,
        /// Seconds to wait (429).
        retry_after: Option<u16>,
    },
    /// Telegram could not be reached, or its answer could not be read.
    #[error("telegram unreachable: {0}")]
    Transport(String),
}

impl CallError {
    fn from_frankenstein(e: frankenstein::Error) -> CallError {
        match e {
            frankenstein::Error::Api(r) => CallError::Api {
                code: r.error_code,
                description: r.description,
                retry_after: r.parameters.and_then(|p| p.retry_after),
            },
            // Display of the remaining variants carries no URL (frankenstein strips it).
            other => CallError::Transport(other.to_string()),
        }
    }
}

/// The bot's client.
#[derive(Clone)]
pub struct Bot {
    client: Client,
    /// The same HTTP client and `{api_base_url}/bot{token}`, for uploads (`sendPhoto` with the
    /// PNG's bytes as multipart/form-data, which frankenstein only takes from a file path).
    http: reqwest::Client,
    url: SecretString,
}

impl std::fmt::Debug for Bot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Bot([redacted])")
    }
}

/// How long one call may take: a long poll's `timeout` plus this margin.
const CALL_TIMEOUT: Duration = Duration::from_secs(20);
/// `getUpdates`' long-poll timeout, seconds.
pub const POLL_TIMEOUT_S: u32 = 25;

impl Bot {
    /// A client calling `{api_base_url}/bot{token}/{method}`.
    pub fn new(api_base_url: &str, token: &SecretString) -> Result<Bot, CallError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(CALL_TIMEOUT + Duration::from_secs(u64::from(POLL_TIMEOUT_S)))
            .build()
            .map_err(|e| CallError::Transport(e.without_url().to_string()))?;
        let url = format!("{}/bot{}", api_base_url.trim_end_matches('/'), token.expose_secret());
        Ok(Bot {
            client: Client::builder().api_url(url.clone()).client(http.clone()).build(),
            http,
            url: SecretString::from(url),
        })
    }

    /// `sendPhoto` with `png` uploaded as the `photo` part and `params` (chat_id, caption, …) as
    /// the other parts, as Telegram takes a file: multipart/form-data.
    pub async fn send_photo(&self, params: &Value, png: Vec<u8>) -> Result<Value, CallError> {
        let mut form = reqwest::multipart::Form::new();
        if let Some(map) = params.as_object() {
            for (k, v) in map {
                form = match v {
                    Value::String(s) => form.text(k.clone(), s.clone()),
                    other => form.text(k.clone(), other.to_string()),
                };
            }
        }
        let part = reqwest::multipart::Part::bytes(png)
            .file_name("setup.png")
            .mime_str("image/png")
            .map_err(|e| CallError::Transport(e.without_url().to_string()))?;
        form = form.part("photo", part);
        let url = format!("{}/sendPhoto", self.url.expose_secret());
        let resp = self
            .http
            .post(url)
            .multipart(form)
            .send()
            .await
            .map_err(|e| CallError::Transport(e.without_url().to_string()))?;
        let answer: Value =
            resp.json().await.map_err(|e| CallError::Transport(e.without_url().to_string()))?;
        if answer.get("ok").and_then(Value::as_bool) == Some(true) {
            return Ok(answer.get("result").cloned().unwrap_or(Value::Null));
        }
        Err(CallError::Api {
            code: answer.get("error_code").and_then(Value::as_u64).unwrap_or(0),
            description: answer
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or("no description")
                .to_string(),
            retry_after: answer
                .pointer("/parameters/retry_after")
                .and_then(Value::as_u64)
                .and_then(|s| u16::try_from(s).ok()),
        })
    }

    /// Calls `method` with `params` and returns its `result`.
    pub async fn call(&self, method: &str, params: &Value) -> Result<Value, CallError> {
        let answer: frankenstein::response::MethodResponse<Value> = self
            .client
            .request(method, Some(params.clone()))
            .await
            .map_err(CallError::from_frankenstein)?;
        Ok(answer.result)
    }

    /// Calls `method` with typed parameters.
    pub async fn call_typed<P: Serialize>(
        &self,
        method: &str,
        params: &P,
    ) -> Result<Value, CallError> {
        let params = serde_json::to_value(params)
            .map_err(|e| CallError::Transport(format!("encoding {method}: {e}")))?;
        self.call(method, &params).await
    }
}

/// An outbox payload: the method and its parameters.
pub fn payload<P: Serialize>(method: &str, params: &P) -> Value {
    // Serialising frankenstein's parameter structs into a Value cannot fail (no maps with
    // non-string keys, no custom serializers that error).
    serde_json::json!({ "method": method, "params": serde_json::to_value(params).unwrap_or(Value::Null) })
}

/// An outbox payload for a message with the setup picture of `signal_id`: `sendPhoto` with
/// `message`'s text as the caption (cut to Telegram's 1,024 characters) and its buttons, the
/// PNG rendered at send time from the signal id (no picture bytes in SQL), and `message`
/// itself as the fallback sent when the picture cannot be rendered.
pub fn photo_payload(message: &frankenstein::methods::SendMessageParams, signal_id: &str) -> Value {
    let fallback = payload("sendMessage", message);
    let mut params = serde_json::json!({
        "chat_id": fallback["params"]["chat_id"],
        "caption": super::html::fit_caption(&message.text),
    });
    for key in ["parse_mode", "disable_notification", "reply_markup"] {
        if let Some(v) = fallback["params"].get(key) {
            params[key] = v.clone();
        }
    }
    serde_json::json!({
        "method": "sendPhoto",
        "params": params,
        "setup_of": signal_id,
        "fallback": fallback,
    })
}

/// Sends the outbox's Telegram rows.
pub struct Deliverer {
    bot: Bot,
    state: AppState,
    /// Setups rendered in the last [`SETUP_REUSE_MS`]: signal id → (rendered at ms, PNG). A new
    /// signal's alerts to every linked subscriber are queued together, so they share one
    /// rendering, made in [`Deliver::prepare`] before the send's rate turns are taken.
    setups: std::sync::Mutex<std::collections::HashMap<String, (i64, Vec<u8>)>>,
}

/// How long a rendered setup is reused for the same signal's alerts, ms (a `Modify` or `Close`
/// arriving later shows from then on).
const SETUP_REUSE_MS: i64 = 60_000;

impl Deliverer {
    /// A deliverer sending through `bot`, recording blocked users in the hub's database.
    pub fn new(bot: Bot, state: AppState) -> Deliverer {
        Deliverer { bot, state, setups: std::sync::Mutex::new(std::collections::HashMap::new()) }
    }
}

/// What a failed call means for the outbox.
pub fn outcome_of(e: &CallError) -> Outcome {
    match e {
        CallError::Api { code: 429, retry_after, .. } => {
            Outcome::RetryAfter(Duration::from_secs(u64::from(retry_after.unwrap_or(1).max(1))))
        }
        // Editing a message into what it already says: the goal is reached.
        CallError::Api { code: 400, description, .. }
            if description.contains("message is not modified") =>
        {
            Outcome::Sent
        }
        CallError::Api { code, description, .. } if (500..600).contains(code) => {
            Outcome::Retry(format!("telegram {code}: {description}"))
        }
        CallError::Api { code, description, .. } => {
            Outcome::Fail(format!("telegram {code}: {description}"))
        }
        CallError::Transport(t) => Outcome::Retry(t.clone()),
    }
}

impl Deliverer {
    /// The setup PNG of `signal`: rendered in the last [`SETUP_REUSE_MS`], or now (and kept).
    async fn setup(&self, signal: &str) -> Result<Option<Vec<u8>>, crate::error::ApiError> {
        let state = &self.state;
        let now = state.now_ms();
        let reused = self.setups.lock().ok().and_then(|held| {
            held.get(signal)
                .filter(|(at, _)| now.saturating_sub(*at) < SETUP_REUSE_MS)
                .map(|(_, png)| png.clone())
        });
        if let Some(png) = reused {
            return Ok(Some(png));
        }
        let theme = crate::charts::Theme::Light;
        let r =
            crate::public::media::signal_setup_png(&state.db, &state.hub_identity, signal, theme)
                .await;
        if let (Ok(Some(png)), Ok(mut held)) = (&r, self.setups.lock()) {
            held.retain(|_, (at, _)| now.saturating_sub(*at) < SETUP_REUSE_MS);
            held.insert(signal.to_string(), (now, png.clone()));
        }
        r
    }

    /// A `sendPhoto` of a signal's setup (rendered in [`Deliver::prepare`], or now); the stored
    /// fallback (`sendMessage`) when the picture cannot be rendered (an unknown signal, a
    /// drawing fault).
    async fn send_setup(
        &self,
        payload: &Value,
        method: &str,
        params: &Value,
        signal: &str,
    ) -> Result<Value, CallError> {
        let rendered = self.setup(signal).await;
        match rendered {
            Ok(Some(png)) if method == "sendPhoto" => self.bot.send_photo(params, png).await,
            other => {
                if let Err(e) = other {
                    tracing::warn!(error = %e, "rendering a signal's setup failed: sending the text");
                }
                let fallback = payload.get("fallback");
                match (
                    fallback.and_then(|f| f.get("method")).and_then(Value::as_str),
                    fallback.and_then(|f| f.get("params")),
                ) {
                    (Some(m), Some(p)) => self.bot.call(m, p).await,
                    _ => Err(CallError::Api {
                        code: 400,
                        description: "the stored photo has no fallback".into(),
                        retry_after: None,
                    }),
                }
            }
        }
    }
}

impl Deliver for Deliverer {
    fn prepare<'a>(&'a self, msg: &'a Message) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if let Some(signal) = msg.payload.get("setup_of").and_then(Value::as_str) {
                // Kept for the send; a failure is met again (and answered) by the send.
                let _ = self.setup(signal).await;
            }
        })
    }

    fn deliver<'a>(&'a self, msg: &'a Message) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let payload = &msg.payload;
            let (Some(method), Some(params)) =
                (payload.get("method").and_then(Value::as_str), payload.get("params"))
            else {
                return Outcome::Fail("the stored payload has no method or params".into());
            };
            let sent = match payload.get("setup_of").and_then(Value::as_str) {
                Some(signal) => self.send_setup(payload, method, params, signal).await,
                None => self.bot.call(method, params).await,
            };
            match sent {
                Ok(result) => {
                    // An approval message: its id, to edit it with the node's answer.
                    let post = msg
                        .dedupe_key
                        .as_deref()
                        .and_then(|k| k.strip_prefix(super::approve::POST_KEY));
                    let id = result.get("message_id").and_then(Value::as_i64);
                    if let (Some(post), Some(id)) = (post.filter(|p| !p.contains(':')), id)
                        && let Err(e) = super::approve::posted(&self.state.db, post, id).await
                    {
                        tracing::warn!(error = %e, "recording an approval message's id failed");
                    }
                    Outcome::Sent
                }
                Err(e) => {
                    if let (CallError::Api { code: 403, .. }, Some(chat)) = (&e, &msg.route) {
                        let now = self.state.now_ms();
                        if let Err(db) = super::link::mark_blocked(&self.state.db, chat, now).await
                        {
                            tracing::warn!(error = %db, "recording a blocked Telegram chat failed");
                        }
                    }
                    outcome_of(&e)
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u64, description: &str, retry_after: Option<u16>) -> CallError {
        CallError::Api { code, description: description.into(), retry_after }
    }

    #[test]
    fn telegram_answers_map_to_outbox_outcomes() {
        assert_eq!(
            outcome_of(&api(429, "Too Many Requests: retry after 7", Some(7))),
            Outcome::RetryAfter(Duration::from_secs(7))
        );
        assert_eq!(
            outcome_of(&api(429, "Too Many Requests", None)),
            Outcome::RetryAfter(Duration::from_secs(1))
        );
        assert_eq!(
            outcome_of(&api(400, "Bad Request: message is not modified: x", None)),
            Outcome::Sent
        );
        assert!(matches!(
            outcome_of(&api(403, "Forbidden: bot was blocked by the user", None)),
            Outcome::Fail(_)
        ));
        assert!(matches!(
            outcome_of(&api(400, "Bad Request: chat not found", None)),
            Outcome::Fail(_)
        ));
        assert!(matches!(outcome_of(&api(502, "Bad Gateway", None)), Outcome::Retry(_)));
        assert!(matches!(outcome_of(&CallError::Transport("timed out".into())), Outcome::Retry(_)));
    }

    #[test]
    fn the_token_never_shows_in_debug() {
        let bot = Bot::new("http://127.0.0.1:9", &SecretString::from("123:SECRET")).unwrap();
        assert!(!format!("{bot:?}").contains("SECRET"));
    }
}
