//! The broker's symbol specs (`symbol_specs`, since schema 4): one JSON
//! [`ea::SymbolSpec`] per (account, symbol), keyed `"{account}\u{0}{symbol}"`, so an EA push that
//! rewrites the account row no longer carries the whole Market Watch. Hello replaces an
//! account's specs; a `RequestSpec` answer upserts one.

use std::collections::HashSet;

use redb::{ReadableTable, TableDefinition, WriteTransaction};
use tradecast_protocol::ea;

use super::{StoreError, Tx, View, from_row, to_row};

/// The specs: `"{account}\u{0}{symbol}"` → JSON [`ea::SymbolSpec`].
pub(crate) const SYMBOL_SPECS: TableDefinition<'static, &str, &[u8]> =
    TableDefinition::new("symbol_specs");

const NAME: &str = "symbol_specs";

/// A spec's key.
fn key(account: &str, symbol: &str) -> String {
    format!("{account}\u{0}{symbol}")
}

/// The key range of one account's specs: `"{account}\0"` (inclusive) to `"{account}\u{1}"`
/// (exclusive), so an account whose key extends another's (`1@a`, `1@ab`) stays out.
fn bounds(account: &str) -> (String, String) {
    (format!("{account}\u{0}"), format!("{account}\u{1}"))
}

fn get(
    t: &impl ReadableTable<&'static str, &'static [u8]>,
    account: &str,
    symbol: &str,
) -> Result<Option<ea::SymbolSpec>, StoreError> {
    let v = t.get(key(account, symbol).as_str())?;
    v.map(|v| from_row(NAME, v.value())).transpose()
}

fn all(
    t: &impl ReadableTable<&'static str, &'static [u8]>,
    account: &str,
) -> Result<Vec<ea::SymbolSpec>, StoreError> {
    let (from, to) = bounds(account);
    let mut out = Vec::new();
    for e in t.range(from.as_str()..to.as_str())? {
        let (_, v) = e?;
        out.push(from_row(NAME, v.value())?);
    }
    Ok(out)
}

fn names(
    t: &impl ReadableTable<&'static str, &'static [u8]>,
    account: &str,
) -> Result<Vec<String>, StoreError> {
    let (from, to) = bounds(account);
    let mut out = Vec::new();
    for e in t.range(from.as_str()..to.as_str())? {
        let (k, _) = e?;
        if let Some((_, symbol)) = k.value().split_once('\u{0}') {
            out.push(symbol.to_owned());
        }
    }
    Ok(out)
}

/// Replaces `account`'s specs by `specs` inside `tx` (hello; the upgrade to schema 4). Of two
/// specs of one symbol the first is kept, as a look-up in the hello's list found it.
pub(super) fn replace_in(
    tx: &WriteTransaction,
    account: &str,
    specs: &[ea::SymbolSpec],
) -> Result<(), StoreError> {
    let mut t = tx.open_table(SYMBOL_SPECS)?;
    for symbol in names(&t, account)? {
        t.remove(key(account, &symbol).as_str())?;
    }
    let mut seen = HashSet::new();
    for spec in specs {
        if !seen.insert(spec.symbol.as_str()) {
            continue;
        }
        let bytes = to_row(NAME, spec)?;
        t.insert(key(account, &spec.symbol).as_str(), bytes.as_slice())?;
    }
    Ok(())
}

impl Tx<'_> {
    /// `account`'s spec of `symbol`, if the EA reported one.
    pub fn symbol_spec(
        &self,
        account: &str,
        symbol: &str,
    ) -> Result<Option<ea::SymbolSpec>, StoreError> {
        get(&self.tx.open_table(SYMBOL_SPECS)?, account, symbol)
    }

    /// Every spec of `account` (its Market Watch), by symbol.
    pub fn symbol_specs(&self, account: &str) -> Result<Vec<ea::SymbolSpec>, StoreError> {
        all(&self.tx.open_table(SYMBOL_SPECS)?, account)
    }

    /// Replaces every spec of `account` by `specs` (hello: a symbol no longer in Market Watch
    /// goes).
    pub fn replace_symbol_specs(
        &mut self,
        account: &str,
        specs: &[ea::SymbolSpec],
    ) -> Result<(), StoreError> {
        replace_in(self.tx, account, specs)
    }

    /// Writes one spec of `account` (a `RequestSpec` answer), replacing the symbol's old one.
    pub fn put_symbol_spec(
        &mut self,
        account: &str,
        spec: &ea::SymbolSpec,
    ) -> Result<(), StoreError> {
        let bytes = to_row(NAME, spec)?;
        self.tx
            .open_table(SYMBOL_SPECS)?
            .insert(key(account, &spec.symbol).as_str(), bytes.as_slice())?;
        Ok(())
    }
}

impl View {
    /// `account`'s spec of `symbol`, if the EA reported one.
    pub fn symbol_spec(
        &self,
        account: &str,
        symbol: &str,
    ) -> Result<Option<ea::SymbolSpec>, StoreError> {
        get(&self.tx.open_table(SYMBOL_SPECS)?, account, symbol)
    }

    /// Every spec of `account` (its Market Watch), by symbol.
    pub fn symbol_specs(&self, account: &str) -> Result<Vec<ea::SymbolSpec>, StoreError> {
        all(&self.tx.open_table(SYMBOL_SPECS)?, account)
    }

    /// The symbols of `account`'s specs, by name, without decoding the specs.
    pub fn symbol_names(&self, account: &str) -> Result<Vec<String>, StoreError> {
        names(&self.tx.open_table(SYMBOL_SPECS)?, account)
    }
}

#[cfg(test)]
mod tests {
    use rust_decimal::Decimal;
    use tradecast_protocol::ea;

    use crate::store::Store;

    fn spec(symbol: &str, digits: u32) -> ea::SymbolSpec {
        ea::SymbolSpec {
            symbol: symbol.into(),
            digits,
            point: Decimal::new(1, 5),
            tick_size: Decimal::new(1, 5),
            tick_value_profit: Decimal::ONE,
            tick_value_loss: Decimal::ONE,
            contract_size: Decimal::from(100_000),
            volume_min: Decimal::new(1, 2),
            volume_max: Decimal::from(100),
            volume_step: Decimal::new(1, 2),
            stops_level: 0,
            freeze_level: 0,
            trade_mode: ea::TradeMode::Full,
            currency_base: "EUR".into(),
            currency_profit: "USD".into(),
            currency_margin: "EUR".into(),
            sessions: Vec::new(),
        }
    }

    fn names(specs: &[ea::SymbolSpec]) -> Vec<(&str, u32)> {
        specs.iter().map(|s| (s.symbol.as_str(), s.digits)).collect()
    }

    #[test]
    fn hello_replaces_an_accounts_specs_and_one_spec_is_upserted() {
        let store = Store::open_backend(redb::backends::InMemoryBackend::new()).expect("store");
        store
            .write(|tx| {
                tx.replace_symbol_specs("1@a", &[spec("EURUSD", 5), spec("GBPUSD", 5)])?;
                tx.replace_symbol_specs("1@ab", &[spec("XAUUSD", 2)])?;
                tx.replace_symbol_specs("1", &[spec("USDJPY", 3)])?;
                Ok(())
            })
            .expect("hello");
        let view = store.read().expect("read");
        assert_eq!(
            names(&view.symbol_specs("1@a").expect("specs")),
            [("EURUSD", 5), ("GBPUSD", 5)]
        );
        // Another account whose key extends this one's (or is its prefix) does not leak in.
        assert_eq!(names(&view.symbol_specs("1@ab").expect("specs")), [("XAUUSD", 2)]);
        assert_eq!(names(&view.symbol_specs("1").expect("specs")), [("USDJPY", 3)]);
        assert_eq!(view.symbol_spec("1@a", "XAUUSD").expect("get"), None);
        assert_eq!(view.symbol_names("1@a").expect("names"), ["EURUSD", "GBPUSD"]);
        assert!(view.symbol_specs("2@a").expect("specs").is_empty());
        drop(view);

        store
            .write(|tx| {
                // A new hello: GBPUSD left Market Watch, USDCHF joined; the first of two wins.
                tx.replace_symbol_specs(
                    "1@a",
                    &[spec("USDCHF", 5), spec("EURUSD", 4), spec("EURUSD", 9)],
                )?;
                // A `RequestSpec` answer: one spec replaced, one added.
                tx.put_symbol_spec("1@a", &spec("USDCHF", 6))?;
                tx.put_symbol_spec("1@a", &spec("AUDUSD", 5))?;
                assert_eq!(
                    tx.symbol_spec("1@a", "USDCHF")?.map(|s| s.digits),
                    Some(6),
                    "a write transaction reads its own spec"
                );
                Ok(())
            })
            .expect("second hello");
        let view = store.read().expect("read");
        assert_eq!(
            names(&view.symbol_specs("1@a").expect("specs")),
            [("AUDUSD", 5), ("EURUSD", 4), ("USDCHF", 6)]
        );
        assert_eq!(view.symbol_spec("1@a", "GBPUSD").expect("get"), None);
        assert_eq!(view.symbol_spec("1@a", "EURUSD").expect("get"), Some(spec("EURUSD", 4)));
        // The other accounts are untouched.
        assert_eq!(names(&view.symbol_specs("1@ab").expect("specs")), [("XAUUSD", 2)]);
        assert_eq!(names(&view.symbol_specs("1").expect("specs")), [("USDJPY", 3)]);
    }
}
