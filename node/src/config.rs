//! The node's configuration: `config.toml` in the data dir (written by `init` with every
//! setting and its default), overridden by `TRADECAST_*` environment variables and flags (clap
//! reads both, see [`crate::cli`]). Parsed once at start into [`crate::runtime::Settings`].
//!
//! Safe defaults: both listeners on 127.0.0.1, subscriber mode, no self-trading, a 20 %
//! drawdown cap (the policy's `risk.drawdown_lock_pct`). A listener on a non-loopback address is refused: the EA link and the local API
//! are for this machine only (reach them from elsewhere through an SSH tunnel).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use tradecast_protocol::ea;

use crate::policy::PolicySettings;
use crate::policy::calendar::HolidayCalendar;
use crate::runtime::Settings;

/// The config file's name in the data dir.
pub const FILE_NAME: &str = "config.toml";
/// The local API token's file name in the data dir (mode 0600).
pub const TOKEN_FILE: &str = "api-token";

/// Provider or subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum, Default)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Receives signals and executes them under the trader's rules.
    #[default]
    Subscriber,
    /// Runs the strategy on the EA's bars and publishes signed signals.
    Provider,
}

/// Log output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum, Default)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Every setting, with its default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The EA link's address (loopback only). Default `127.0.0.1:7341`.
    pub ea_listen: SocketAddr,
    /// The local API's address (loopback only). Default `127.0.0.1:7342`.
    pub api_listen: SocketAddr,
    /// `subscriber` (default) or `provider`.
    pub mode: Mode,
    /// Execute this node's own signals on its account. Default false.
    pub self_trade: bool,
    /// Long-poll wait the EA is told to use, ms. Default 500.
    pub poll_wait_ms: u32,
    /// The EA link is down after this many silent seconds. Default 10.
    pub link_down_after_s: u32,
    /// Bar subscriptions, `SYMBOL:TIMEFRAME`. Default `["EURUSD:H1"]`.
    pub subscriptions: Vec<String>,
    /// No longer a setting: the drawdown cap is the policy's `risk.drawdown_lock_pct` (the
    /// guard closes everything and the EA keeps the floor at it). Read once, when a store of
    /// schema 1 is upgraded: the stricter of this (default 20) and the policy's value becomes
    /// the policy's. Omitted from new files.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drawdown_max_pct: Option<Decimal>,
    /// Daily loss limit: percent below the equity at the start of the broker's server day.
    /// Default none.
    pub daily_loss_max_pct: Option<Decimal>,
    /// Percent of equity risked per trade when the node sizes an order. Default 1.
    pub risk_pct: Decimal,
    /// The EA's `input_magic` (high 32 bits of Tradecast's magic). Default 20260101.
    pub ea_magic: u32,
    /// Extra trust anchors (PEM) for a hub whose QUIC endpoint has a WebPKI certificate from a
    /// private CA; the system's anchors are always used. Default: none.
    pub hub_ca_file: Option<std::path::PathBuf>,
    /// `text` (default) or `json`.
    pub log_format: LogFormat,
    /// The copy policy (`[policy]`, every key in [`crate::policy`]'s table). The trader's
    /// settings page saves its own into the store, which then wins over this table.
    pub policy: PolicySettings,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            ea_listen: SocketAddr::from(([127, 0, 0, 1], 7341)),
            api_listen: SocketAddr::from(([127, 0, 0, 1], 7342)),
            mode: Mode::Subscriber,
            self_trade: false,
            poll_wait_ms: ea::DEFAULT_POLL_WAIT_MS,
            link_down_after_s: 10,
            subscriptions: vec!["EURUSD:H1".to_owned()],
            drawdown_max_pct: None,
            daily_loss_max_pct: None,
            risk_pct: Decimal::ONE,
            ea_magic: 20_260_101,
            hub_ca_file: None,
            log_format: LogFormat::Text,
            policy: PolicySettings::default(),
        }
    }
}

/// Why the configuration was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The file is not valid TOML for [`Config`].
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// toml's words (names the key).
        message: String,
    },
    /// A value is out of range.
    #[error("{field}: {message}")]
    Invalid {
        /// The setting.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
}

impl Config {
    /// Reads `config.toml` from the data dir (defaults when absent).
    pub fn load(data: &Path) -> Result<Config, ConfigError> {
        let path = data.join(FILE_NAME);
        match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text)
                .map_err(|e| ConfigError::Parse { path, message: e.to_string() }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
            Err(source) => Err(ConfigError::Io { path, source }),
        }
    }

    /// Writes the file with every setting (used by `init`).
    pub fn write(&self, data: &Path) -> Result<(), ConfigError> {
        let path = data.join(FILE_NAME);
        let text = toml::to_string_pretty(self)
            .map_err(|e| ConfigError::Parse { path: path.clone(), message: e.to_string() })?;
        std::fs::write(&path, text).map_err(|source| ConfigError::Io { path, source })
    }

    /// Checks the values and turns them into the runtime's settings.
    pub fn settings(&self) -> Result<Settings, ConfigError> {
        for (field, addr) in [("ea_listen", self.ea_listen), ("api_listen", self.api_listen)] {
            if !addr.ip().is_loopback() {
                return Err(ConfigError::Invalid {
                    field,
                    message: format!("{addr} is not a loopback address (use an SSH tunnel)"),
                });
            }
        }
        if self.drawdown_max_pct.is_some_and(|d| d <= Decimal::ZERO || d >= Decimal::ONE_HUNDRED) {
            return Err(ConfigError::Invalid {
                field: "drawdown_max_pct",
                message: "must be between 0 and 100".into(),
            });
        }
        if self.daily_loss_max_pct.is_some_and(|d| d <= Decimal::ZERO || d >= Decimal::ONE_HUNDRED)
        {
            return Err(ConfigError::Invalid {
                field: "daily_loss_max_pct",
                message: "must be between 0 and 100".into(),
            });
        }
        if self.risk_pct <= Decimal::ZERO || self.risk_pct > Decimal::from(10) {
            return Err(ConfigError::Invalid {
                field: "risk_pct",
                message: "must be above 0 and at most 10".into(),
            });
        }
        let mut subscriptions = Vec::new();
        for s in &self.subscriptions {
            let parsed = s
                .split_once(':')
                .and_then(|(sym, tf)| ea::Timeframe::parse(tf).map(|t| (sym.to_owned(), t)))
                .filter(|(sym, t)| !sym.is_empty() && t.seconds().is_some());
            match parsed {
                Some(p) => subscriptions.push(p),
                None => {
                    return Err(ConfigError::Invalid {
                        field: "subscriptions",
                        message: format!("{s:?} is not SYMBOL:TIMEFRAME (M1 … W1)"),
                    });
                }
            }
        }
        self.policy
            .validate()
            .map_err(|e| ConfigError::Invalid { field: "policy", message: e.to_string() })?;
        Ok(Settings {
            poll_wait_ms: self.poll_wait_ms.min(crate::runtime::POLL_WAIT_MAX_MS),
            link_down_after_ms: i64::from(self.link_down_after_s) * 1_000,
            subscriptions,
            provider: self.mode == Mode::Provider,
            self_trade: self.self_trade,
            upgrade_drawdown_max_pct: self.drawdown_max_pct.unwrap_or(Decimal::from(20)),
            daily_loss_max_pct: self.daily_loss_max_pct,
            risk_pct: self.risk_pct,
            ea_magic: self.ea_magic,
            policy: self.policy.clone(),
            calendar: HolidayCalendar::default_calendar(),
        })
    }
}

/// The holiday calendar's file name in the data dir.
pub const HOLIDAYS_FILE: &str = "holidays.toml";

/// Reads `holidays.toml` from the data dir (the default calendar when absent).
pub fn load_calendar(data: &Path) -> Result<HolidayCalendar, ConfigError> {
    let path = data.join(HOLIDAYS_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => HolidayCalendar::parse(&text)
            .map_err(|e| ConfigError::Parse { path, message: e.to_string() }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Ok(HolidayCalendar::default_calendar())
        }
        Err(source) => Err(ConfigError::Io { path, source }),
    }
}
