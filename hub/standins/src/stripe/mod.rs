//! A strict local stand-in for the part of Stripe the hub uses: products and recurring prices,
//! customers, Checkout Sessions in subscription mode with a hosted page a browser completes
//! with a test card, Customer Portal sessions with a page, subscriptions with a test clock
//! (trials, renewals, failed payments and their retries, recovery, cancellation at period end),
//! invoices and their payments, refunds, and webhooks signed as Stripe signs them.
//!
//! It checks what it receives as Stripe does (API key, unknown and missing parameters,
//! idempotency keys, pagination) and renders its objects in the API version async-stripe pins
//! ([`model::API_VERSION`]) with every field that version requires. See `hub/standins/README.md`.

pub mod api;
pub mod form;
pub mod model;
mod pages;
pub mod webhook;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::routing::{any, get, post};
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use model::{Account, CardDetails};

/// How the stand-in starts.
#[derive(Debug, Clone)]
pub struct StripeStandinConfig {
    /// Where to listen (default `127.0.0.1:0`: a free port).
    pub listen: SocketAddr,
    /// Where webhooks go (none: events are recorded, not sent).
    pub webhook_url: Option<String>,
    /// The secret API key (default: a fresh `sk_test_…`).
    pub secret_key: Option<String>,
    /// The webhook signing secret (default: a fresh `whsec_…`).
    pub webhook_secret: Option<String>,
    /// The pause before the second delivery attempt, doubled at each retry (default 200 ms).
    pub retry_base: Duration,
    /// Delivery attempts of one event (default 5; Stripe tries for 3 days).
    pub max_attempts: u32,
    /// The test clock's start (unix s; default now).
    pub start_s: Option<i64>,
}

impl Default for StripeStandinConfig {
    fn default() -> Self {
        StripeStandinConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            webhook_url: None,
            secret_key: None,
            webhook_secret: None,
            retry_base: webhook::RETRY_BASE,
            max_attempts: 5,
            start_s: None,
        }
    }
}

/// The delivery switches (all off: each event once, in order of creation within an action).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delivery {
    /// Send every event twice.
    pub duplicate: bool,
    /// Send the events of one action in reverse order.
    pub reorder: bool,
    /// Send nothing (the events are still recorded: [`StripeStandin::dropped`]).
    pub drop: bool,
}

/// One delivery attempt of an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// `evt_…`.
    pub event_id: String,
    /// e.g. `invoice.paid`.
    pub event_type: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// The endpoint's status, `None` when it was not reached.
    pub status: Option<u16>,
    /// A 2xx answer.
    pub ok: bool,
}

/// Why a checkout could not be completed (the text the page shows).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CheckoutError(pub String);

/// Why the stand-in did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The listen address could not be bound.
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    /// The webhook HTTP client could not be built.
    #[error("webhook client: {0}")]
    Client(String),
}

pub(crate) struct Shared {
    account: Mutex<Account>,
    pub(crate) secret_key: String,
    pub(crate) webhook_secret: String,
    pub(crate) webhook_url: Mutex<Option<String>>,
    pub(crate) delivery: Mutex<Delivery>,
    pub(crate) deliveries: Mutex<Vec<Delivered>>,
    pub(crate) dropped: Mutex<Vec<String>>,
    pub(crate) in_flight: AtomicUsize,
    pub(crate) http: reqwest::Client,
    pub(crate) retry_base: Duration,
    pub(crate) max_attempts: u32,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Account> {
        self.account.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn deliver(self: &Arc<Self>, events: Vec<Value>) {
        webhook::deliver(self, events);
    }

    /// Runs `f` on the account and delivers the events it made.
    pub(crate) fn act<T>(self: &Arc<Self>, f: impl FnOnce(&mut Account) -> T) -> T {
        let mut a = self.lock();
        let out = f(&mut a);
        let events = std::mem::take(&mut a.pending);
        drop(a);
        self.deliver(events);
        out
    }
}

/// A running stand-in.
pub struct StripeStandin {
    shared: Arc<Shared>,
    base_url: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for StripeStandin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeStandin").field("base_url", &self.base_url).finish_non_exhaustive()
    }
}

fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    rand::fill(&mut b[..]);
    hex::encode(b)
}

impl StripeStandin {
    /// Binds, serves in the background and returns.
    pub async fn start(config: StripeStandinConfig) -> Result<StripeStandin, StartError> {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|e| StartError::Bind(config.listen, e))?;
        let addr = listener.local_addr().map_err(|e| StartError::Bind(config.listen, e))?;
        let base_url = format!("http://{addr}");
        let now = config.start_s.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0)
        });
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| StartError::Client(e.to_string()))?;
        let shared = Arc::new(Shared {
            account: Mutex::new(Account::new(now, base_url.clone())),
            secret_key: config
                .secret_key
                .unwrap_or_else(|| format!("sk_test_standin_{}", random_hex(16))),
            webhook_secret: config
                .webhook_secret
                .unwrap_or_else(|| format!("whsec_{}", random_hex(24))),
            webhook_url: Mutex::new(config.webhook_url),
            delivery: Mutex::new(Delivery::default()),
            deliveries: Mutex::new(Vec::new()),
            dropped: Mutex::new(Vec::new()),
            in_flight: AtomicUsize::new(0),
            http,
            retry_base: config.retry_base,
            max_attempts: config.max_attempts.max(1),
        });
        let app = Router::new()
            .route("/v1/{*rest}", any(api::handle))
            .route("/checkout/{id}", get(pages::checkout_page).post(pages::checkout_submit))
            .route("/portal/{id}", get(pages::portal_page))
            .route("/portal/{id}/{action}", post(pages::portal_action))
            .route("/invoice/{id}", get(pages::invoice_page))
            .with_state(shared.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = stopped.await;
            });
            if let Err(e) = serve.await {
                tracing::warn!(error = %e, "stripe stand-in stopped");
            }
        });
        Ok(StripeStandin { shared, base_url, stop: Some(stop), task: Some(task) })
    }

    /// `http://127.0.0.1:<port>`: the hub's `[stripe] api_base_url`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The secret API key it accepts (the hub's `stripe_secret_key`).
    pub fn secret_key(&self) -> &str {
        &self.shared.secret_key
    }

    /// The webhook signing secret (the hub's `stripe_webhook_secret`).
    pub fn webhook_secret(&self) -> &str {
        &self.shared.webhook_secret
    }

    /// Where webhooks go from now on.
    pub fn set_webhook_url(&self, url: impl Into<String>) {
        *self.shared.webhook_url.lock().unwrap_or_else(|e| e.into_inner()) = Some(url.into());
    }

    /// The test clock (unix s).
    pub fn now_s(&self) -> i64 {
        self.shared.lock().now
    }

    /// Moves the test clock forward, doing in order what falls due: trial ends, renewals,
    /// payment retries (+3 and +5 days after a failure, then cancel), cancellations at period
    /// end; each emits its events.
    pub fn advance_clock(&self, by: Duration) {
        let secs = i64::try_from(by.as_secs()).unwrap_or(i64::MAX / 2);
        self.shared.act(|a| {
            let until = a.now.saturating_add(secs);
            a.advance_to(until)
        });
    }

    /// Sets the delivery switches.
    pub fn set_delivery(&self, d: Delivery) {
        *self.shared.delivery.lock().unwrap_or_else(|e| e.into_inner()) = d;
    }

    /// What the Checkout page's form does with a card number: the subscription, its invoice and
    /// payment, the events; returns the success URL with `{CHECKOUT_SESSION_ID}` replaced.
    pub fn complete_checkout(&self, session_id: &str, card: &str) -> Result<String, CheckoutError> {
        let card = CardDetails::of(card).map_err(CheckoutError)?;
        self.shared.act(|a| a.complete_checkout(session_id, card, None)).map_err(CheckoutError)
    }

    /// What the portal's "update card" does: a new default card, and a past_due subscription's
    /// open invoice paid with it.
    pub fn update_card(&self, customer: &str, card: &str) -> Result<(), CheckoutError> {
        let card = CardDetails::of(card).map_err(CheckoutError)?;
        self.shared.act(|a| a.update_card(customer, card)).map_err(CheckoutError)
    }

    /// The card network decides a dispute (by its id `du_…` or its charge's `ch_…`): what
    /// submitting Stripe's `winning_evidence` / `losing_evidence` does in test mode. Returns the
    /// dispute's id.
    pub fn close_dispute(
        &self,
        dispute_or_charge: &str,
        won: bool,
    ) -> Result<String, CheckoutError> {
        self.shared.act(|a| a.close_dispute(dispute_or_charge, won)).map_err(CheckoutError)
    }

    /// Every event made so far, in order (whole Stripe event objects).
    pub fn events(&self) -> Vec<Value> {
        self.shared.lock().events.clone()
    }

    /// The successful deliveries, in the order they were answered (duplicates included).
    pub fn delivered(&self) -> Vec<Delivered> {
        self.deliveries().into_iter().filter(|d| d.ok).collect()
    }

    /// Every delivery attempt, failed ones included.
    pub fn deliveries(&self) -> Vec<Delivered> {
        self.shared.deliveries.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The ids of the events the drop switch kept from the endpoint.
    pub fn dropped(&self) -> Vec<String> {
        self.shared.dropped.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Waits until no delivery is in flight (retries included); `false` on timeout.
    pub async fn settle(&self, timeout: Duration) -> bool {
        let end = tokio::time::Instant::now() + timeout;
        loop {
            if self.shared.in_flight.load(Ordering::SeqCst) == 0 {
                return true;
            }
            if tokio::time::Instant::now() >= end {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops serving (deliveries in flight are abandoned).
    pub async fn shutdown(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for StripeStandin {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}
