//! The node against the simulated terminal over the real EA link (the node never depends on the
//! sim, so these tests live in the root package): the sim's conformance suite against a real
//! node, with a trigger that makes the node create orders and a close-all through its local API.

mod billing_browser;
mod browser;
mod conformance;
mod console_browser;
mod crash;
mod demo_browser;
mod faults;
mod hub_ui;
mod instances;
mod miniapp_browser;
mod policy;
mod replay;
mod rig;
mod rules;
mod seeded;
mod ui;

use std::net::SocketAddr;
use std::path::Path;

use tradecast_node::config::Config;
use tradecast_node::serve::{self, Running, tokio_util_shutdown::Shutdown};

/// The copy policy these tests run under unless they set their own: auto mode (consent
/// given), the provider's lot as sent (`volume` of a submitted signal), no reward/risk floor and no
/// price-move limit (the quote is the last closed bar, the tests price off the live tick), up to
/// all of the equity at the stop (the guard tests open big positions on purpose), up to ten
/// positions per symbol. Every other rule keeps its default.
pub fn auto_policy() -> tradecast_node::policy::PolicySettings {
    use tradecast_node::policy::{PolicySettings, approval::ApprovalMode, sizing::LotMode};
    let mut p = PolicySettings::default();
    p.approval.mode = ApprovalMode::Auto;
    p.approval.consent_version = 1;
    p.lot = LotMode::Multiplier { factor: rust_decimal::Decimal::ONE };
    p.min_rr = rust_decimal::Decimal::ZERO;
    p.max_risk_pct = rust_decimal::Decimal::ONE_HUNDRED;
    p.max_price_move_stop_fraction = rust_decimal::Decimal::ZERO;
    p.risk.max_open_positions = 10;
    p.risk.max_open_per_symbol = 10;
    p
}

/// [`auto_policy`] for a self-trading provider: its signals carry no provider lot, so sized by
/// 1 % risk, one position at a time (the backtest's rule).
pub fn self_trade_policy() -> tradecast_node::policy::PolicySettings {
    let mut p = auto_policy();
    p.lot = tradecast_node::policy::sizing::LotMode::RiskPercent {
        percent: rust_decimal::Decimal::ONE,
    };
    p.risk.max_open_per_symbol = 1;
    p
}

/// A fresh node in `dir` on ephemeral loopback ports, with one EA key.
pub struct TestNode {
    pub running: Running,
    pub shutdown: Shutdown,
    pub key_id: String,
    pub secret: String,
    pub token: String,
}

impl TestNode {
    pub async fn start(dir: &Path, edit: impl FnOnce(&mut Config)) -> TestNode {
        serve::init(dir).expect("init");
        let key = serve::new_ea_key(dir).expect("ea key");
        let mut config = Config {
            ea_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            api_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            policy: auto_policy(),
            ..Config::default()
        };
        edit(&mut config);
        let shutdown = Shutdown::new();
        let running = serve::start(dir, &config, shutdown.clone()).await.expect("start");
        let token = serve::api_token(dir).expect("token").to_string();
        TestNode {
            running,
            shutdown,
            key_id: key.key_id.clone(),
            secret: key.secret.to_string(),
            token,
        }
    }

    pub fn ea_url(&self) -> String {
        format!("http://{}", self.running.ea_addr)
    }

    pub fn api_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.running.api_addr)
    }

    /// A JSON call to the local API.
    pub async fn api(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let client = reqwest::Client::new();
        let mut req = client.request(method, self.api_url(path)).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("API answers");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("API body");
        (status, serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
    }
}
