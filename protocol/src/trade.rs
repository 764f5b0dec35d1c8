//! The one intrabar rule (fib-rsi.md, Trades) shared by the backtest and the simulated terminal:
//! a bar whose range touches both the stop and the target hits the stop first.
