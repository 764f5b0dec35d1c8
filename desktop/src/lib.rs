//! `tradecast-desktop`: the trader's everyday Tradecast on Windows and Linux — the node library
//! running in this process (or a `tradecast-node` daemon it attaches to) and the node's own web
//! UI in a Tauri v2 window, with a tray icon, native notifications, autostart and a single
//! instance. One UI: the window shows the pages the node serves on its loopback address; the
//! shell adds no front end of its own.
//!
//! It depends on `tradecast-node` and `tradecast-protocol` only: never on the hub or the
//! simulated terminal (the window test runs the `tradecast-sim` binary as another process).
//!
//! Modules: [`backend`] (data dir, in-process node or attach, the local API client),
//! [`watch`] (the tray's state and the notifications due, pure), [`prefs`] (`desktop.toml`:
//! notification levels, autostart), [`app`] (the Tauri shell).

pub mod app;
pub mod backend;
pub mod prefs;
pub mod watch;
