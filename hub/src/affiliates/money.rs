//! The commission arithmetic, pure: no clock, no store.
//!
//! Rules (the hub README states them for owners):
//! - A percent commission is `paid × rate_bp / 10 000`, rounded once, half to even, to a whole
//!   minor unit of the commission's currency.
//! - An invoice paid in Telegram Stars (`XTR`) is converted to the account currency at
//!   `billing.xtr_rate` (one Star in the account currency's major unit) before the percent:
//!   `stars × xtr_rate × 100 × rate_bp / 10 000`, rounded once, half to even, to a cent (the
//!   account currency has two decimals). The rate used is stored on the entry.
//! - A partial refund reverses `commission × refunded / paid` of it, half to even.
//! - A tier applies from the invoice that makes the affiliate's paying referrals reach it; it does
//!   not change commissions already booked.

use rust_decimal::prelude::ToPrimitive;
use rust_decimal::{Decimal, RoundingStrategy};

/// One programme's commission scheme for a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scheme {
    /// `bp` basis points of each paid invoice, for `months` calendar months (UTC) from the
    /// referral's first payment (`None`: for life).
    Percent {
        /// Basis points (100 = 1 %).
        bp: i64,
        /// Months, or for life.
        months: Option<i64>,
    },
    /// A fixed amount, once, on the referral's first payment.
    Fixed {
        /// Minor units.
        minor: i64,
        /// ISO 4217.
        currency: String,
    },
}

/// A commission computed for one invoice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Computed {
    /// Minor units of `currency`.
    pub amount_minor: i64,
    /// The commission's currency.
    pub currency: String,
    /// The rate applied (percent schemes).
    pub rate_bp: Option<i64>,
    /// The Stars rate used (invoices in `XTR`).
    pub xtr_rate: Option<Decimal>,
}

/// What the scheme needs to know of an invoice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaidInvoice<'a> {
    /// Minor units paid (whole Stars for `XTR`).
    pub paid_minor: i64,
    /// ISO 4217 or `XTR`.
    pub currency: &'a str,
    /// When it was paid, unix ms.
    pub paid_at_ms: i64,
    /// When the referral first paid (this invoice's time if it is the first), unix ms.
    pub first_paid_at_ms: i64,
    /// Whether it is the referral's first paid invoice.
    pub first: bool,
}

/// `ms` plus `months` calendar months in UTC, the day of month kept or clamped to the month's
/// last day (as a processor renews: Jan 31 → Feb 28 → Mar 31 is counted from the first date);
/// the end of "recurring for N months". Saturates at the end of representable time.
pub fn months_after(ms: i64, months: i64) -> i64 {
    let utc = jiff::tz::Offset::UTC;
    let moved = jiff::Timestamp::from_millisecond(ms).ok().and_then(|t| {
        let span = jiff::Span::new().try_months(months).ok()?;
        utc.to_timestamp(utc.to_datetime(t).checked_add(span).ok()?).ok()
    });
    moved.map_or(i64::MAX, |t| t.as_millisecond())
}

/// The rate of a percent scheme for an affiliate with `paying` paying referrals: the highest
/// tier reached (tiers: `(min_paying, bp)`), else `base_bp`.
pub fn tier_rate(base_bp: i64, tiers: &[(i64, i64)], paying: i64) -> i64 {
    tiers
        .iter()
        .filter(|(min, _)| paying >= *min)
        .max_by_key(|(min, _)| *min)
        .map_or(base_bp, |(_, bp)| *bp)
}

/// Rounds to a whole number, half to even; `None` beyond `i64`.
pub fn half_even(d: Decimal) -> Option<i64> {
    d.round_dp_with_strategy(0, RoundingStrategy::MidpointNearestEven).to_i64()
}

/// `amount × bp / 10 000`, half to even.
pub fn percent_of(amount_minor: i64, bp: i64) -> Option<i64> {
    half_even(Decimal::from(amount_minor) * Decimal::from(bp) / Decimal::from(10_000))
}

/// The commission `scheme` gives on `inv` at rate `rate_bp` (the tier's, for a percent scheme),
/// in `account_currency` for a Stars invoice. `None`: no commission (outside the recurring
/// months, a fixed scheme on a renewal, or nothing paid).
pub fn commission(
    scheme: &Scheme,
    rate_bp: i64,
    inv: &PaidInvoice<'_>,
    account_currency: &str,
    xtr_rate: Decimal,
) -> Option<Computed> {
    if inv.paid_minor <= 0 {
        return None;
    }
    match scheme {
        Scheme::Fixed { minor, currency } => (inv.first && *minor > 0).then(|| Computed {
            amount_minor: *minor,
            currency: currency.clone(),
            rate_bp: None,
            xtr_rate: None,
        }),
        Scheme::Percent { months, .. } => {
            if let Some(m) = months {
                let until = months_after(inv.first_paid_at_ms, *m);
                if inv.paid_at_ms >= until {
                    return None;
                }
            }
            let (amount, currency, xtr) = if inv.currency == "XTR" {
                let cents = Decimal::from(inv.paid_minor) * xtr_rate * Decimal::from(100);
                let amount = half_even(cents * Decimal::from(rate_bp) / Decimal::from(10_000))?;
                (amount, account_currency.to_string(), Some(xtr_rate))
            } else {
                (percent_of(inv.paid_minor, rate_bp)?, inv.currency.to_string(), None)
            };
            (amount > 0).then_some(Computed {
                amount_minor: amount,
                currency,
                rate_bp: Some(rate_bp),
                xtr_rate: xtr,
            })
        }
    }
}

/// What an invoice paid in the account currency (the statement's basis column): Stars at
/// `xtr_rate`, half to even to a cent; any other currency as it is.
pub fn basis(
    paid_minor: i64,
    currency: &str,
    account_currency: &str,
    xtr_rate: Decimal,
) -> (i64, String) {
    if currency == "XTR" {
        let cents = half_even(Decimal::from(paid_minor) * xtr_rate * Decimal::from(100));
        (cents.unwrap_or(i64::MAX), account_currency.to_string())
    } else {
        (paid_minor, currency.to_string())
    }
}

/// How much of `commission_minor` a refund of `refunded` out of `paid` reverses, half to even
/// (never more than the commission).
pub fn reversed(commission_minor: i64, refunded: i64, paid: i64) -> i64 {
    if paid <= 0 || refunded <= 0 {
        return 0;
    }
    if refunded >= paid {
        return commission_minor;
    }
    let r = Decimal::from(commission_minor) * Decimal::from(refunded) / Decimal::from(paid);
    half_even(r).unwrap_or(commission_minor).min(commission_minor)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;

    fn paid(minor: i64, currency: &str, at: i64, first_at: i64) -> PaidInvoice<'_> {
        PaidInvoice {
            paid_minor: minor,
            currency,
            paid_at_ms: at,
            first_paid_at_ms: first_at,
            first: at == first_at,
        }
    }

    #[test]
    fn percent_rounds_half_to_even_once() {
        // 4900 × 20 % = 980 exactly; 4925 × 10 % = 492.5 → 492; 4935 × 10 % = 493.5 → 494.
        assert_eq!(percent_of(4900, 2000), Some(980));
        assert_eq!(percent_of(4925, 1000), Some(492));
        assert_eq!(percent_of(4935, 1000), Some(494));
        assert_eq!(percent_of(1, 5000), Some(0), "0.5 rounds to the even 0");
        assert_eq!(percent_of(3, 5000), Some(2), "1.5 rounds to the even 2");
    }

    /// 2026-01-31 00:00 UTC.
    const JAN31: i64 = 1_769_817_600_000;

    #[test]
    fn months_are_calendar_months() {
        let date = |ms: i64| {
            jiff::tz::Offset::UTC.to_datetime(jiff::Timestamp::from_millisecond(ms).unwrap()).date()
        };
        assert_eq!(date(JAN31).to_string(), "2026-01-31");
        assert_eq!(date(months_after(JAN31, 1)).to_string(), "2026-02-28");
        assert_eq!(date(months_after(JAN31, 2)).to_string(), "2026-03-31");
        assert_eq!(date(months_after(JAN31, 12)).to_string(), "2027-01-31");
        assert_eq!(months_after(i64::MAX - 1, 1), i64::MAX);
    }

    #[test]
    fn recurring_months_end_and_life_does_not() {
        let s = Scheme::Percent { bp: 2000, months: Some(12) };
        // Monthly renewals from Jan 31: the 12th payment (Dec 31) is inside, the 13th (Jan 31
        // a year on) outside — 30-day months would have ended on 2027-01-26.
        let inside = paid(4900, "USD", months_after(JAN31, 11), JAN31);
        let c = commission(&s, 2000, &inside, "USD", Decimal::new(13, 3)).unwrap();
        assert_eq!((c.amount_minor, c.currency.as_str(), c.rate_bp), (980, "USD", Some(2000)));
        let last_day = paid(4900, "USD", months_after(JAN31, 12) - 1, JAN31);
        assert!(commission(&s, 2000, &last_day, "USD", Decimal::ONE).is_some());
        let outside = paid(4900, "USD", months_after(JAN31, 12), JAN31);
        assert_eq!(commission(&s, 2000, &outside, "USD", Decimal::ONE), None);
        let life = Scheme::Percent { bp: 2000, months: None };
        assert!(
            commission(
                &life,
                2000,
                &paid(4900, "USD", months_after(JAN31, 100), JAN31),
                "USD",
                Decimal::ONE
            )
            .is_some()
        );
    }

    #[test]
    fn fixed_pays_the_first_payment_only() {
        let s = Scheme::Fixed { minor: 1500, currency: "EUR".into() };
        let first = paid(4900, "USD", 5 * DAY, 5 * DAY);
        let c = commission(&s, 0, &first, "USD", Decimal::ONE).unwrap();
        assert_eq!((c.amount_minor, c.currency.as_str()), (1500, "EUR"));
        assert_eq!(
            commission(&s, 0, &paid(4900, "USD", 35 * DAY, 5 * DAY), "USD", Decimal::ONE),
            None
        );
    }

    #[test]
    fn stars_convert_at_the_rate_then_round_once() {
        // 250 Stars × 0.013 USD = 3.25 USD = 325 cents; 20 % = 65 cents exactly.
        let s = Scheme::Percent { bp: 2000, months: None };
        let c = commission(&s, 2000, &paid(250, "XTR", 0, 0), "USD", Decimal::new(13, 3)).unwrap();
        assert_eq!((c.amount_minor, c.currency.as_str()), (65, "USD"));
        assert_eq!(c.xtr_rate, Some(Decimal::new(13, 3)));
        // 99 Stars × 0.013 = 128.7 cents; 25 % = 32.175 → 32 (one rounding, not 129 × 25 %).
        let c = commission(&s, 2500, &paid(99, "XTR", 0, 0), "USD", Decimal::new(13, 3)).unwrap();
        assert_eq!(c.amount_minor, 32);
        assert_eq!(basis(99, "XTR", "USD", Decimal::new(13, 3)), (129, "USD".into()));
        assert_eq!(basis(4900, "EUR", "USD", Decimal::new(13, 3)), (4900, "EUR".into()));
    }

    #[test]
    fn tiers_take_the_highest_reached() {
        let tiers = [(3, 2500), (10, 3000)];
        assert_eq!(tier_rate(2000, &tiers, 2), 2000);
        assert_eq!(tier_rate(2000, &tiers, 3), 2500);
        assert_eq!(tier_rate(2000, &tiers, 12), 3000);
        assert_eq!(tier_rate(2000, &[], 12), 2000);
    }

    #[test]
    fn refunds_reverse_in_proportion() {
        assert_eq!(reversed(980, 4900, 4900), 980);
        assert_eq!(reversed(980, 2450, 4900), 490);
        assert_eq!(reversed(981, 2450, 4900), 490, "490.5 → 490");
        assert_eq!(reversed(983, 2450, 4900), 492, "491.5 → 492");
        assert_eq!(reversed(980, 0, 4900), 0);
        assert_eq!(reversed(980, 9999, 4900), 980);
    }
}
