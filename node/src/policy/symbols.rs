//! Symbol mapping: the provider's canonical symbol (`EURUSD`) to the broker's name in this
//! terminal (`EURUSD.m`), through an explicit map or a prefix/suffix rule, gated by the include
//! and exclude lists and the per-symbol switch. Names compare exactly (MT5 symbol names are
//! case-sensitive).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::sizing::LotMode;

/// Per-symbol settings, keyed by the canonical symbol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SymbolRule {
    /// Copy this symbol at all. Default `true`.
    pub enabled: bool,
    /// A lot mode for this symbol only, instead of [`super::PolicySettings::lot`].
    /// Default none.
    pub lot: Option<LotMode>,
}

impl Default for SymbolRule {
    fn default() -> Self {
        Self { enabled: true, lot: None }
    }
}

/// How canonical symbols become broker symbols (part of [`super::PolicySettings`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SymbolSettings {
    /// Explicit names, canonical → broker (`EURUSD = "EURUSD.m"`); wins over prefix and suffix.
    /// Default empty.
    pub map: BTreeMap<String, String>,
    /// Put before the canonical name when it is not in `map` (`"m."` → `m.EURUSD`). Default "".
    pub prefix: String,
    /// Put after the canonical name when it is not in `map` (`".m"` → `EURUSD.m`). Default "".
    pub suffix: String,
    /// When not empty, only these canonical symbols are copied. Default empty (all).
    pub include: Vec<String>,
    /// Canonical symbols never copied; wins over `include`. Default empty.
    pub exclude: Vec<String>,
    /// Per-symbol switches and lot modes, keyed by canonical symbol. Default empty.
    pub per_symbol: BTreeMap<String, SymbolRule>,
}

/// Why a symbol is not copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unmapped {
    /// In the exclude list.
    Excluded { canonical: String },
    /// The include list is in force and does not name it.
    NotIncluded { canonical: String },
    /// Switched off in `per_symbol`.
    Disabled { canonical: String },
    /// The mapped name is not among the symbols the EA reported.
    NotAtBroker { canonical: String, broker: String },
}

impl fmt::Display for Unmapped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unmapped::Excluded { canonical } => write!(f, "{canonical} is in the exclude list"),
            Unmapped::NotIncluded { canonical } => {
                write!(f, "{canonical} is not in the include list")
            }
            Unmapped::Disabled { canonical } => write!(f, "{canonical} is switched off"),
            Unmapped::NotAtBroker { canonical, broker } if canonical == broker => write!(
                f,
                "{canonical} is not in the broker's Market Watch (map it, or set a prefix/suffix)"
            ),
            Unmapped::NotAtBroker { canonical, broker } => {
                write!(f, "{canonical} maps to {broker}, which is not in the broker's Market Watch")
            }
        }
    }
}

impl SymbolSettings {
    /// The broker's name for `canonical` (map, else prefix + name + suffix), without checking it
    /// exists.
    pub fn broker_name(&self, canonical: &str) -> String {
        match self.map.get(canonical) {
            Some(name) => name.clone(),
            None => format!("{}{canonical}{}", self.prefix, self.suffix),
        }
    }

    /// The per-symbol rule for `canonical` (the default when none is set).
    pub fn rule(&self, canonical: &str) -> SymbolRule {
        self.per_symbol.get(canonical).cloned().unwrap_or_default()
    }

    /// Maps `canonical` to a broker symbol the EA reported (`broker_symbols`), or says why not.
    /// Order: exclude, include, per-symbol switch, then the name must exist at the broker.
    pub fn map_symbol<'a>(
        &self,
        canonical: &str,
        broker_symbols: impl IntoIterator<Item = &'a str>,
    ) -> Result<String, Unmapped> {
        let canonical_owned = || canonical.to_string();
        if self.exclude.iter().any(|s| s == canonical) {
            return Err(Unmapped::Excluded { canonical: canonical_owned() });
        }
        if !self.include.is_empty() && !self.include.iter().any(|s| s == canonical) {
            return Err(Unmapped::NotIncluded { canonical: canonical_owned() });
        }
        if !self.rule(canonical).enabled {
            return Err(Unmapped::Disabled { canonical: canonical_owned() });
        }
        let broker = self.broker_name(canonical);
        if broker_symbols.into_iter().any(|s| s == broker) {
            Ok(broker)
        } else {
            Err(Unmapped::NotAtBroker { canonical: canonical_owned(), broker })
        }
    }
}

/// For the settings page: the broker symbols that are `prefix + canonical + suffix` for some
/// prefix and suffix (`EURUSD` → `EURUSD.m`, `m.EURUSD`, `EURUSDpro`), the exact name first, then
/// shortest first. One candidate is a suggestion; several are for the trader to choose from. It
/// never maps anything by itself.
pub fn candidates<'a>(
    canonical: &str,
    broker_symbols: impl IntoIterator<Item = &'a str>,
) -> Vec<&'a str> {
    if canonical.is_empty() {
        return Vec::new();
    }
    let mut found: Vec<&str> =
        broker_symbols.into_iter().filter(|b| b.contains(canonical)).collect();
    found.sort_by_key(|b| (*b != canonical, b.len(), *b));
    found.dedup();
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const BROKER: [&str; 4] = ["EURUSD.m", "GBPUSD.m", "XAUUSD", "GER40.cash"];

    fn check(settings: &SymbolSettings, canonical: &str, expect: Result<&str, &str>) {
        let got = settings.map_symbol(canonical, BROKER.iter().copied()).map_err(|e| e.to_string());
        assert_eq!(
            got,
            expect.map(str::to_string).map_err(str::to_string),
            "{canonical} under {settings:?}"
        );
    }

    #[test]
    fn suffix_prefix_and_the_explicit_map() {
        let s = SymbolSettings {
            suffix: ".m".into(),
            map: [
                ("XAUUSD".to_string(), "XAUUSD".to_string()),
                ("DAX".into(), "GER40.cash".into()),
            ]
            .into(),
            ..Default::default()
        };
        check(&s, "EURUSD", Ok("EURUSD.m"));
        check(&s, "GBPUSD", Ok("GBPUSD.m"));
        check(&s, "XAUUSD", Ok("XAUUSD"));
        check(&s, "DAX", Ok("GER40.cash"));
        check(
            &s,
            "USDJPY",
            Err("USDJPY maps to USDJPY.m, which is not in the broker's Market Watch"),
        );
        let plain = SymbolSettings::default();
        check(&plain, "XAUUSD", Ok("XAUUSD"));
        check(
            &plain,
            "EURUSD",
            Err("EURUSD is not in the broker's Market Watch (map it, or set a prefix/suffix)"),
        );
        let prefixed = SymbolSettings { prefix: "m.".into(), ..Default::default() };
        assert_eq!(prefixed.broker_name("EURUSD"), "m.EURUSD");
        // Names are case-sensitive, as in MT5.
        let lower = SymbolSettings { suffix: ".M".into(), ..Default::default() };
        check(
            &lower,
            "EURUSD",
            Err("EURUSD maps to EURUSD.M, which is not in the broker's Market Watch"),
        );
    }

    #[test]
    fn include_exclude_and_the_per_symbol_switch() {
        let base = SymbolSettings { suffix: ".m".into(), ..Default::default() };
        let inc = SymbolSettings { include: vec!["EURUSD".into()], ..base.clone() };
        check(&inc, "EURUSD", Ok("EURUSD.m"));
        check(&inc, "GBPUSD", Err("GBPUSD is not in the include list"));
        let exc = SymbolSettings {
            include: vec!["EURUSD".into(), "GBPUSD".into()],
            exclude: vec!["GBPUSD".into()],
            ..base.clone()
        };
        check(&exc, "GBPUSD", Err("GBPUSD is in the exclude list"));
        check(&exc, "EURUSD", Ok("EURUSD.m"));
        let off = SymbolSettings {
            per_symbol: [("EURUSD".to_string(), SymbolRule { enabled: false, lot: None })].into(),
            ..base.clone()
        };
        check(&off, "EURUSD", Err("EURUSD is switched off"));
        check(&off, "GBPUSD", Ok("GBPUSD.m"));
        assert_eq!(off.rule("GBPUSD"), SymbolRule::default());
        assert!(SymbolRule::default().enabled);
    }

    #[test]
    fn candidates_for_the_settings_page() {
        let broker = ["GBPUSD.m", "EURUSD.pro", "EURUSD.m", "m.EURUSD", "EURGBP", "EURUSD.m"];
        assert_eq!(candidates("EURUSD", broker), ["EURUSD.m", "m.EURUSD", "EURUSD.pro"]);
        assert_eq!(candidates("EURUSD", ["EURUSD", "EURUSD.m"]), ["EURUSD", "EURUSD.m"]);
        assert_eq!(candidates("USDJPY", broker), Vec::<&str>::new());
        assert_eq!(candidates("", broker), Vec::<&str>::new());
    }

    #[test]
    fn settings_read_from_toml() {
        let s: SymbolSettings = toml::from_str(
            "suffix = \".m\"\nexclude = [\"USDTRY\"]\n[map]\nDAX = \"GER40.cash\"\n[per_symbol.GBPUSD]\nenabled = false\n",
        )
        .expect("toml");
        check(&s, "DAX", Ok("GER40.cash"));
        check(&s, "GBPUSD", Err("GBPUSD is switched off"));
        check(&s, "USDTRY", Err("USDTRY is in the exclude list"));
        assert!(toml::from_str::<SymbolSettings>("sufix = \".m\"").is_err());
    }
}
