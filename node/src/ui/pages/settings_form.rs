//! The settings form as posted: parsed field by field and applied onto the policy in force,
//! validated before the page saves it. Words for every refusal, no panics on any input.

use std::collections::BTreeMap;

use rust_decimal::Decimal;

use crate::orders::Split;
use crate::policy::PolicySettings;
use crate::policy::approval::ApprovalMode;
use crate::policy::sizing::LotMode;

/// A settings form as posted: every field by name (the last value wins, so a checkbox's hidden
/// `off` before it reads as off when unchecked), and the repeated per-symbol fields. A field
/// the form did not send keeps the policy's value.
#[derive(Debug, Default)]
pub struct SettingsForm {
    fields: BTreeMap<String, String>,
    /// Canonical symbols listed in the per-symbol table (`sym_listed`).
    listed: Vec<String>,
    /// Of those, the ones ticked to copy (`sym_on`).
    on: Vec<String>,
}

fn dec(name: &str, v: &str) -> Result<Decimal, String> {
    v.trim().parse::<Decimal>().map_err(|_| format!("{name}: {v:?} is not a number"))
}

fn int(name: &str, v: &str) -> Result<u32, String> {
    v.trim().parse::<u32>().map_err(|_| format!("{name}: {v:?} is not a whole number"))
}

/// A comma- or space-separated list of symbols, upper-cased.
fn symbol_list(v: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in v.split([',', ' ', '\n', '\r', '\t']).map(|s| s.trim().to_uppercase()) {
        if !s.is_empty() && !out.contains(&s) {
            out.push(s);
        }
    }
    out
}

/// The symbol map's text: one `EURUSD = EURUSD.m` per line (canonical = broker name).
fn symbol_map(v: &str) -> Result<BTreeMap<String, String>, String> {
    let mut map = BTreeMap::new();
    for (i, line) in v.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let Some((canonical, broker)) = line.split_once('=') else {
            return Err(format!(
                "symbol map, line {}: {line:?} is not `EURUSD = EURUSD.m` (provider's name = broker's name)",
                i + 1
            ));
        };
        let (canonical, broker) = (canonical.trim().to_uppercase(), broker.trim().to_owned());
        if canonical.is_empty() || broker.is_empty() || broker.contains(char::is_whitespace) {
            return Err(format!("symbol map, line {}: {line:?} needs a name on each side", i + 1));
        }
        map.insert(canonical, broker);
    }
    Ok(map)
}

impl SettingsForm {
    /// The form from its `application/x-www-form-urlencoded` pairs.
    pub fn from_pairs(pairs: Vec<(String, String)>) -> SettingsForm {
        let mut f = SettingsForm::default();
        for (k, v) in pairs {
            match k.as_str() {
                "sym_listed" => f.listed.push(v.trim().to_uppercase()),
                "sym_on" => f.on.push(v.trim().to_uppercase()),
                _ => {
                    f.fields.insert(k, v);
                }
            }
        }
        f
    }

    /// The CSRF token the form carried.
    pub fn csrf(&self) -> Option<&str> {
        self.fields.get("csrf").map(String::as_str)
    }

    fn text(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }

    fn flag(&self, name: &str, current: bool) -> bool {
        match self.text(name) {
            Some(v) => v == "on",
            None => current,
        }
    }

    fn set_dec(&self, name: &str, label: &str, into: &mut Decimal) -> Result<(), String> {
        if let Some(v) = self.text(name) {
            *into = dec(label, v)?;
        }
        Ok(())
    }

    fn set_int(&self, name: &str, label: &str, into: &mut u32) -> Result<(), String> {
        if let Some(v) = self.text(name) {
            *into = int(label, v)?;
        }
        Ok(())
    }

    /// An optional decimal: blank is none.
    fn set_opt_dec(
        &self,
        name: &str,
        label: &str,
        into: &mut Option<Decimal>,
    ) -> Result<(), String> {
        if let Some(v) = self.text(name) {
            *into = if v.trim().is_empty() { None } else { Some(dec(label, v)?) };
        }
        Ok(())
    }

    /// The form applied onto `p`, validated.
    pub fn apply(&self, mut p: PolicySettings) -> Result<PolicySettings, String> {
        p.copying = self.flag("copying", p.copying);
        if let Some(mode) = self.text("approval_mode") {
            p.approval.mode = match mode {
                "auto" => ApprovalMode::Auto,
                _ => ApprovalMode::Manual,
            };
        }
        if self.text("consent").is_some() {
            p.approval.consent_version =
                if self.flag("consent", false) { p.approval.consent_version.max(1) } else { 0 };
        }
        p.approval.remote_approval = self.flag("remote_approval", p.approval.remote_approval);

        p.market_hours.enabled = self.flag("market_hours", p.market_hours.enabled);
        p.market_hours.broker_sessions =
            self.flag("broker_sessions", p.market_hours.broker_sessions);
        if let Some(v) = self.text("always_open") {
            p.market_hours.always_open = symbol_list(v);
        }
        self.set_int("max_signal_age_s", "max signal age", &mut p.max_signal_age_s)?;
        if let Some(v) = self.text("max_price_move_points") {
            p.max_price_move_points =
                if v.trim().is_empty() { None } else { Some(int("max price move", v)?) };
        }
        self.set_dec(
            "max_price_move_stop_fraction",
            "max price move (fraction of the stop distance)",
            &mut p.max_price_move_stop_fraction,
        )?;
        self.set_int("max_slippage_points", "max slippage", &mut p.max_slippage_points)?;
        p.copy_pending = self.flag("copy_pending", p.copy_pending);

        if let Some(v) = self.text("symbol_prefix") {
            p.symbols.prefix = v.trim().to_owned();
        }
        if let Some(v) = self.text("symbol_suffix") {
            p.symbols.suffix = v.trim().to_owned();
        }
        if let Some(v) = self.text("symbol_map") {
            p.symbols.map = symbol_map(v)?;
        }
        if let Some(v) = self.text("include") {
            p.symbols.include = symbol_list(v);
        }
        if let Some(v) = self.text("exclude") {
            p.symbols.exclude = symbol_list(v);
        }
        for sym in &self.listed {
            let rule = p.symbols.per_symbol.entry(sym.clone()).or_default();
            rule.enabled = self.on.contains(sym);
        }
        // A switch back on with no lot of its own is the default: no entry needed.
        p.symbols.per_symbol.retain(|_, r| !r.enabled || r.lot.is_some());

        if let Some(mode) = self.text("lot_mode") {
            let v = dec("lot value", self.text("lot_value").unwrap_or(""))?;
            p.lot = match mode {
                "fixed" => LotMode::Fixed { lots: v },
                "multiplier" => LotMode::Multiplier { factor: v },
                "proportional" => LotMode::Proportional {
                    lots: v,
                    per_balance: dec("balance step", self.text("per_balance").unwrap_or(""))?,
                },
                _ => LotMode::RiskPercent { percent: v },
            };
        }
        self.set_opt_dec("lot_min", "min lot", &mut p.lot_min)?;
        self.set_opt_dec("lot_max", "max lot", &mut p.lot_max)?;
        if let Some(v) = self.text("split") {
            p.split = if v == "halves" { Split::Halves } else { Split::Whole };
        }
        p.reverse = self.flag("reverse", p.reverse);
        p.copy_sl = self.flag("copy_sl", p.copy_sl);
        p.copy_tp = self.flag("copy_tp", p.copy_tp);
        p.copy_modifications = self.flag("copy_modifications", p.copy_modifications);
        p.copy_partial_closes = self.flag("copy_partial_closes", p.copy_partial_closes);

        self.set_int("max_open_positions", "max open positions", &mut p.risk.max_open_positions)?;
        self.set_int(
            "max_open_per_symbol",
            "max open per symbol",
            &mut p.risk.max_open_per_symbol,
        )?;
        self.set_dec("min_rr", "min reward/risk", &mut p.min_rr)?;
        self.set_dec("max_risk_pct", "max risk %", &mut p.max_risk_pct)?;
        self.set_dec(
            "daily_loss_limit_pct",
            "daily loss limit %",
            &mut p.risk.daily_loss_limit_pct,
        )?;
        self.set_opt_dec(
            "daily_loss_limit_money",
            "daily loss limit (money)",
            &mut p.risk.daily_loss_limit_money,
        )?;
        self.set_dec("drawdown_lock_pct", "drawdown lock %", &mut p.risk.drawdown_lock_pct)?;
        p.validate().map_err(|e| e.to_string())?;
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().expect("decimal")
    }

    fn form(pairs: &[(&str, &str)]) -> SettingsForm {
        SettingsForm::from_pairs(
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        )
    }

    #[test]
    fn a_form_changes_only_what_it_sends() {
        let base = PolicySettings::default();
        assert_eq!(form(&[("csrf", "x")]).apply(base.clone()), Ok(base.clone()));
        // A checkbox: the hidden `off`, then `on` when ticked; the last value wins.
        let p = form(&[("reverse", "off"), ("reverse", "on"), ("copy_tp", "off")])
            .apply(base.clone())
            .expect("valid");
        assert!(p.reverse && !p.copy_tp && p.copy_sl);
        // Optional numbers: blank is none.
        let p = form(&[("lot_max", "2"), ("max_price_move_points", "12")]).apply(base.clone());
        let p = p.expect("valid");
        assert_eq!((p.lot_max, p.max_price_move_points), (Some(d("2")), Some(12)));
        let p = form(&[("lot_max", " "), ("max_price_move_points", "")]).apply(p).expect("valid");
        assert_eq!((p.lot_max, p.max_price_move_points), (None, None));
    }

    #[test]
    fn symbol_lists_maps_and_switches() {
        let p = form(&[
            ("symbol_map", "ger40 = DE40.cash\n\n XAUUSD=GOLD "),
            ("include", "eurusd,GBPUSD  usdjpy\nEURUSD"),
            ("sym_listed", "EURUSD"),
            ("sym_listed", "usdjpy"),
            ("sym_on", "EURUSD"),
        ])
        .apply(PolicySettings::default())
        .expect("valid");
        assert_eq!(p.symbols.map.get("GER40").map(String::as_str), Some("DE40.cash"));
        assert_eq!(p.symbols.map.get("XAUUSD").map(String::as_str), Some("GOLD"));
        assert_eq!(p.symbols.include, vec!["EURUSD", "GBPUSD", "USDJPY"]);
        assert!(p.symbols.rule("EURUSD").enabled && !p.symbols.rule("USDJPY").enabled);
        assert!(!p.symbols.per_symbol.contains_key("EURUSD"), "on and no own lot: no entry");
        // Switched back on, the entry goes.
        let p = form(&[("sym_listed", "USDJPY"), ("sym_on", "USDJPY")]).apply(p).expect("valid");
        assert!(p.symbols.per_symbol.is_empty());
        for (text, want) in [
            ("EURUSD EURUSD.m", "symbol map, line 1"),
            ("EURUSD = EURUSD.m\n= GOLD", "symbol map, line 2"),
            ("EURUSD = EUR USD", "symbol map, line 1"),
        ] {
            let e = form(&[("symbol_map", text)]).apply(PolicySettings::default());
            assert!(e.as_ref().is_err_and(|m| m.starts_with(want)), "{text:?}: {e:?}");
        }
    }

    #[test]
    fn bad_numbers_and_invalid_policies_are_refused_in_words() {
        let base = PolicySettings::default();
        for (pairs, want) in [
            (
                vec![("max_open_positions", "five")],
                "max open positions: \"five\" is not a whole number",
            ),
            (vec![("min_rr", "1,5")], "min reward/risk: \"1,5\" is not a number"),
            (vec![("lot_mode", "fixed"), ("lot_value", "0")], "must be above 0"),
            (vec![("lot_min", "2"), ("lot_max", "1")], "lot_min"),
            (vec![("lot_mode", "risk_percent"), ("lot_value", "1"), ("copy_sl", "off")], "copy_sl"),
        ] {
            let e = form(&pairs).apply(base.clone());
            assert!(e.as_ref().is_err_and(|m| m.contains(want)), "{pairs:?}: {e:?}");
        }
    }
}
