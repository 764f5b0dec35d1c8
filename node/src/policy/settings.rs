//! The trader's policy settings: the serde shape (TOML, `deny_unknown_fields`, safe defaults),
//! parsing, and the validation every saved policy passes.

use super::*;

/// The trader's copy policy (see the module doc for every field, its default and unit).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicySettings {
    pub copying: bool,
    pub approval: ApprovalSettings,
    pub market_hours: MarketHoursSettings,
    pub max_signal_age_s: u32,
    pub max_price_move_points: Option<u32>,
    pub max_price_move_stop_fraction: Decimal,
    pub max_slippage_points: u32,
    pub copy_pending: bool,
    pub symbols: SymbolSettings,
    pub lot: LotMode,
    pub lot_min: Option<Decimal>,
    pub lot_max: Option<Decimal>,
    pub max_risk_pct: Decimal,
    pub min_rr: Decimal,
    pub split: Split,
    pub reverse: bool,
    pub copy_sl: bool,
    pub copy_tp: bool,
    pub copy_modifications: bool,
    pub copy_partial_closes: bool,
    pub risk: RiskSettings,
}

impl Default for PolicySettings {
    fn default() -> Self {
        Self {
            copying: true,
            approval: ApprovalSettings::default(),
            market_hours: MarketHoursSettings::default(),
            max_signal_age_s: 60,
            max_price_move_points: None,
            max_price_move_stop_fraction: Decimal::new(25, 2),
            max_slippage_points: 10,
            copy_pending: true,
            symbols: SymbolSettings::default(),
            lot: LotMode::default(),
            lot_min: None,
            lot_max: None,
            max_risk_pct: Decimal::from(5),
            min_rr: Decimal::ONE,
            split: Split::Whole,
            reverse: false,
            copy_sl: true,
            copy_tp: true,
            copy_modifications: true,
            copy_partial_closes: true,
            risk: RiskSettings::default(),
        }
    }
}

/// Settings that cannot work together or a value out of its range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SettingsError {
    /// Not TOML of the documented shape.
    #[error("policy settings: {0}")]
    Toml(String),
    /// One setting is out of range or conflicts with another.
    #[error("policy setting {key}: {message}")]
    Invalid { key: String, message: String },
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> SettingsError {
    SettingsError::Invalid { key: key.into(), message: message.into() }
}

fn check_lot_mode(key: &str, mode: &LotMode, copy_sl: bool) -> Result<(), SettingsError> {
    let positive = |name: &str, v: Decimal| {
        if v > Decimal::ZERO {
            Ok(())
        } else {
            Err(invalid(format!("{key}.{name}"), format!("{v} must be above 0")))
        }
    };
    match mode {
        LotMode::Fixed { lots } => positive("lots", *lots),
        LotMode::Multiplier { factor } => positive("factor", *factor),
        LotMode::Proportional { lots, per_balance } => {
            positive("lots", *lots)?;
            positive("per_balance", *per_balance)
        }
        LotMode::RiskPercent { percent } => {
            positive("percent", *percent)?;
            if *percent > Decimal::ONE_HUNDRED {
                return Err(invalid(format!("{key}.percent"), format!("{percent} is above 100")));
            }
            if !copy_sl {
                return Err(invalid(
                    key,
                    "risk % sizing needs the stop: turn copy_sl on or pick another lot mode",
                ));
            }
            Ok(())
        }
    }
}

impl PolicySettings {
    /// Parses and validates a settings file.
    pub fn from_toml(text: &str) -> Result<PolicySettings, SettingsError> {
        let settings: PolicySettings =
            toml::from_str(text).map_err(|e| SettingsError::Toml(e.message().to_string()))?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks ranges and combinations; the first problem found, naming its key.
    pub fn validate(&self) -> Result<(), SettingsError> {
        check_lot_mode("lot", &self.lot, self.copy_sl)?;
        for (symbol, rule) in &self.symbols.per_symbol {
            if let Some(mode) = &rule.lot {
                check_lot_mode(&format!("symbols.per_symbol.{symbol}.lot"), mode, self.copy_sl)?;
            }
        }
        let pct = |key: &str, v: Decimal| {
            if v > Decimal::ZERO && v <= Decimal::ONE_HUNDRED {
                Ok(())
            } else {
                Err(invalid(key, format!("{v} is not a percentage in (0, 100]")))
            }
        };
        pct("max_risk_pct", self.max_risk_pct)?;
        pct("risk.drawdown_lock_pct", self.risk.drawdown_lock_pct)?;
        if self.risk.daily_loss_limit_pct != Decimal::ZERO {
            pct("risk.daily_loss_limit_pct", self.risk.daily_loss_limit_pct)?;
        }
        if let Some(m) = self.risk.daily_loss_limit_money
            && m <= Decimal::ZERO
        {
            return Err(invalid("risk.daily_loss_limit_money", format!("{m} must be above 0")));
        }
        if self.max_price_move_stop_fraction < Decimal::ZERO {
            return Err(invalid(
                "max_price_move_stop_fraction",
                format!("{} must not be negative", self.max_price_move_stop_fraction),
            ));
        }
        if self.min_rr < Decimal::ZERO {
            return Err(invalid("min_rr", format!("{} must not be negative", self.min_rr)));
        }
        for (key, v) in [("lot_min", self.lot_min), ("lot_max", self.lot_max)] {
            if let Some(v) = v
                && v <= Decimal::ZERO
            {
                return Err(invalid(key, format!("{v} must be above 0")));
            }
        }
        if let (Some(min), Some(max)) = (self.lot_min, self.lot_max)
            && min > max
        {
            return Err(invalid("lot_min", format!("{min} is above lot_max {max}")));
        }
        if self.risk.max_open_positions == 0 || self.risk.max_open_per_symbol == 0 {
            return Err(invalid(
                "risk.max_open_positions",
                "0 would copy nothing: set copying = false",
            ));
        }
        if self.reverse && self.split == Split::Halves {
            return Err(invalid("split", "halves need tp2, which a reversed trade does not have"));
        }
        Ok(())
    }
}
