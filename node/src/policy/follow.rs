//! Following the provider: how a provider's `Modify` (new stop or targets) and `Close` (a
//! fraction of the position) apply to one copied position, under the trader's settings.
//!
//! - A full close (`fraction` 1) is always applied, whatever the settings: no copy stays open
//!   after the provider is out.
//! - A partial close applies `fraction` of the copy's current volume, rounded down to the volume
//!   step, when `copy_partial_closes` is on; a part below the broker's minimum is not sent (the
//!   copy is kept, and the log says why); a remainder below the minimum closes the whole copy.
//! - A modification applies when `copy_modifications` is on, only to the levels the trader copies
//!   (`copy_sl`, `copy_tp`); on a reversed copy the provider's stop is the copy's target and the
//!   provider's target the copy's stop. New levels are rounded to the tick like the order's were
//!   (stop away from the price, target toward it).

use rust_decimal::Decimal;
use tradecast_protocol::{Close, Modify};

use super::PolicySettings;
use crate::strategy::Side;

/// Which target a copied leg carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Tp1,
    Tp2,
}

/// One copied position as the node knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopiedPosition {
    /// The copy's side (already reversed if it was).
    pub side: Side,
    pub reversed: bool,
    pub target: Target,
    pub volume: Decimal,
    pub sl: Option<Decimal>,
    pub tp: Option<Decimal>,
}

/// The broker's volume and tick rules for the symbol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VolumeRules {
    pub tick_size: Decimal,
    pub volume_min: Decimal,
    pub volume_step: Decimal,
}

/// What to do with the copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FollowAction {
    /// Set these levels (`None`: no stop / no target).
    Modify { sl: Option<Decimal>, tp: Option<Decimal> },
    /// Close `volume` lots; `None`: all of it.
    Close { volume: Option<Decimal> },
    /// Nothing; the copy-log line says why.
    Ignore { reason: String },
}

fn round(x: Decimal, tick: Decimal, up: bool) -> Option<Decimal> {
    let n = x.checked_div(tick)?;
    (if up { n.ceil() } else { n.floor() }).checked_mul(tick)
}

/// Applies a provider's modification to a copy.
pub fn follow_modify(
    settings: &PolicySettings,
    modify: &Modify,
    copy: &CopiedPosition,
    rules: &VolumeRules,
) -> FollowAction {
    if !settings.copy_modifications {
        return FollowAction::Ignore { reason: "not applied: copying modifications is off".into() };
    }
    if rules.tick_size <= Decimal::ZERO {
        return FollowAction::Ignore {
            reason: format!("not applied: invalid tick size {}", rules.tick_size),
        };
    }
    let provider_target = match copy.target {
        Target::Tp1 => modify.tp1,
        Target::Tp2 => modify.tp2.or(modify.tp1),
    };
    let (new_stop, new_target) =
        if copy.reversed { (provider_target, modify.stop) } else { (modify.stop, provider_target) };
    // A buy's stop and target round down (stop away from, target toward the entry), a sell's up.
    let up = copy.side == Side::Sell;
    let mut sl = copy.sl;
    let mut tp = copy.tp;
    if settings.copy_sl
        && let Some(s) = new_stop
    {
        sl = round(s, rules.tick_size, up);
    }
    if settings.copy_tp
        && let Some(t) = new_target
    {
        tp = round(t, rules.tick_size, up);
    }
    if (sl, tp) == (copy.sl, copy.tp) {
        return FollowAction::Ignore {
            reason: "not applied: nothing the copy carries changed".into(),
        };
    }
    FollowAction::Modify { sl, tp }
}

/// Applies a provider's (partial) close to a copy.
pub fn follow_close(
    settings: &PolicySettings,
    close: &Close,
    copy: &CopiedPosition,
    rules: &VolumeRules,
) -> FollowAction {
    if close.fraction >= Decimal::ONE {
        return FollowAction::Close { volume: None };
    }
    if close.fraction <= Decimal::ZERO {
        return FollowAction::Ignore {
            reason: format!("not applied: close fraction {} is not in (0, 1]", close.fraction),
        };
    }
    if !settings.copy_partial_closes {
        return FollowAction::Ignore {
            reason: "not applied: copying partial closes is off".into(),
        };
    }
    for (what, value) in [
        ("volume step", rules.volume_step),
        ("minimum volume", rules.volume_min),
        ("position volume", copy.volume),
    ] {
        if value <= Decimal::ZERO {
            return FollowAction::Ignore { reason: format!("not applied: invalid {what} {value}") };
        }
    }
    let wanted = copy.volume.checked_mul(close.fraction);
    let part = wanted.and_then(|w| round(w, rules.volume_step, false));
    let (Some(wanted), Some(part)) = (wanted, part) else {
        return FollowAction::Ignore { reason: "not applied: arithmetic overflow".into() };
    };
    if part < rules.volume_min {
        return FollowAction::Ignore {
            reason: format!(
                "not applied: {} of {} lots is {} lots, below the broker's minimum {}; the copy stays open",
                close.fraction,
                copy.volume,
                wanted.normalize(),
                rules.volume_min
            ),
        };
    }
    if copy.volume.checked_sub(part).is_none_or(|rest| rest < rules.volume_min) {
        return FollowAction::Close { volume: None };
    }
    FollowAction::Close { volume: Some(part) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tradecast_protocol::SignalId;

    fn d(s: &str) -> Decimal {
        s.parse().expect("decimal literal")
    }

    fn rules() -> VolumeRules {
        VolumeRules { tick_size: d("0.00001"), volume_min: d("0.01"), volume_step: d("0.01") }
    }

    fn copy(volume: &str) -> CopiedPosition {
        CopiedPosition {
            side: Side::Buy,
            reversed: false,
            target: Target::Tp1,
            volume: d(volume),
            sl: Some(d("1.09900")),
            tp: Some(d("1.10200")),
        }
    }

    fn close(fraction: &str) -> Close {
        Close {
            signal_id: SignalId([1; 16]),
            fraction: d(fraction),
            price: None,
            reason: "provider".into(),
            at_ms: 0,
        }
    }

    fn check_close(s: &PolicySettings, fraction: &str, volume: &str, expect: FollowAction) {
        assert_eq!(
            follow_close(s, &close(fraction), &copy(volume), &rules()),
            expect,
            "{fraction} of {volume}"
        );
    }

    fn ignore(reason: &str) -> FollowAction {
        FollowAction::Ignore { reason: reason.into() }
    }

    #[test]
    fn partial_closes_in_proportion() {
        let s = PolicySettings::default();
        check_close(&s, "0.5", "0.30", FollowAction::Close { volume: Some(d("0.15")) });
        check_close(&s, "0.5", "0.25", FollowAction::Close { volume: Some(d("0.12")) });
        check_close(&s, "0.333", "1", FollowAction::Close { volume: Some(d("0.33")) });
        check_close(&s, "1", "0.25", FollowAction::Close { volume: None });
        // The remainder would be below the minimum (0.1 lots here): close it all.
        let big_min = VolumeRules { volume_min: d("0.1"), ..rules() };
        assert_eq!(
            follow_close(&s, &close("0.9"), &copy("0.5"), &big_min),
            FollowAction::Close { volume: None }
        );
        assert_eq!(
            follow_close(&s, &close("0.8"), &copy("0.5"), &big_min),
            FollowAction::Close { volume: Some(d("0.4")) }
        );
        check_close(&s, "0.9", "0.10", FollowAction::Close { volume: Some(d("0.09")) });
        check_close(
            &s,
            "0.5",
            "0.01",
            ignore(
                "not applied: 0.5 of 0.01 lots is 0.005 lots, below the broker's minimum 0.01; the copy stays open",
            ),
        );
        check_close(&s, "0", "1", ignore("not applied: close fraction 0 is not in (0, 1]"));
        check_close(&s, "0.5", "-1", ignore("not applied: invalid position volume -1"));
        let zero_min = VolumeRules { volume_min: d("0"), ..rules() };
        assert_eq!(
            follow_close(&s, &close("0.5"), &copy("1"), &zero_min),
            ignore("not applied: invalid minimum volume 0")
        );
        let off = PolicySettings { copy_partial_closes: false, ..PolicySettings::default() };
        check_close(&off, "0.5", "0.30", ignore("not applied: copying partial closes is off"));
        // A full close is applied whatever the settings.
        check_close(&off, "1", "0.30", FollowAction::Close { volume: None });
    }

    fn modify(stop: Option<&str>, tp1: Option<&str>, tp2: Option<&str>) -> Modify {
        Modify {
            signal_id: SignalId([1; 16]),
            stop: stop.map(d),
            tp1: tp1.map(d),
            tp2: tp2.map(d),
            reason: "trail".into(),
            at_ms: 0,
        }
    }

    #[test]
    fn modifications_follow_the_settings() {
        let s = PolicySettings::default();
        let m = modify(Some("1.099504"), None, None);
        assert_eq!(
            follow_modify(&s, &m, &copy("1"), &rules()),
            FollowAction::Modify { sl: Some(d("1.09950")), tp: Some(d("1.10200")) }
        );
        let both = modify(Some("1.1"), Some("1.10500"), Some("1.10800"));
        assert_eq!(
            follow_modify(&s, &both, &copy("1"), &rules()),
            FollowAction::Modify { sl: Some(d("1.1")), tp: Some(d("1.10500")) }
        );
        let second = CopiedPosition { target: Target::Tp2, ..copy("1") };
        assert_eq!(
            follow_modify(&s, &both, &second, &rules()),
            FollowAction::Modify { sl: Some(d("1.1")), tp: Some(d("1.10800")) }
        );
        // A sell rounds up.
        let sell = CopiedPosition {
            side: Side::Sell,
            sl: Some(d("1.2")),
            tp: Some(d("1.0")),
            ..copy("1")
        };
        assert_eq!(
            follow_modify(&s, &modify(Some("1.150001"), None, None), &sell, &rules()),
            FollowAction::Modify { sl: Some(d("1.15001")), tp: Some(d("1.0")) }
        );
        // Reversed: the provider's stop is the copy's target and its tp1 the copy's stop.
        let rev = CopiedPosition {
            side: Side::Sell,
            reversed: true,
            sl: Some(d("1.10200")),
            tp: Some(d("1.09900")),
            ..copy("1")
        };
        assert_eq!(
            follow_modify(&s, &modify(Some("1.09950"), Some("1.10300"), None), &rev, &rules()),
            FollowAction::Modify { sl: Some(d("1.10300")), tp: Some(d("1.09950")) }
        );
        let no_sl = PolicySettings {
            copy_sl: false,
            lot: crate::policy::sizing::LotMode::Fixed { lots: d("1") },
            ..PolicySettings::default()
        };
        let c = CopiedPosition { sl: None, ..copy("1") };
        assert_eq!(
            follow_modify(&no_sl, &modify(Some("1.09950"), None, None), &c, &rules()),
            ignore("not applied: nothing the copy carries changed")
        );
        let off = PolicySettings { copy_modifications: false, ..PolicySettings::default() };
        assert_eq!(
            follow_modify(&off, &m, &copy("1"), &rules()),
            ignore("not applied: copying modifications is off")
        );
        let bad = VolumeRules { tick_size: d("0"), ..rules() };
        assert_eq!(
            follow_modify(&s, &m, &copy("1"), &bad),
            ignore("not applied: invalid tick size 0")
        );
    }
}
