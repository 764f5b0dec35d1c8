//! The Tauri shell: one window on the node's loopback origin, the tray, notifications,
//! autostart and single instance. No logic of the node lives here: every action is a call to
//! the node's local API ([`crate::backend::Link`]).
//!
//! - The window loads `http://127.0.0.1:PORT/login?token=…&next=/ui/start` (the node's own UI)
//!   and may navigate only within that origin; new windows are refused. Closing it hides it to
//!   the tray; "Quit" stops the in-process node cleanly.
//! - The page gets no Tauri IPC (`capabilities/main.json` grants nothing, and no remote URL is
//!   listed), so the node's UI runs exactly as in a browser, under the node's own CSP.
//! - A second start of the app focuses the first one (single instance).

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use tauri::image::Image;
use tauri::menu::{CheckMenuItem, Menu, MenuEvent, MenuItem, PredefinedMenuItem, Submenu};
use tauri::tray::{MouseButton, MouseButtonState, TrayIcon, TrayIconBuilder, TrayIconEvent};
use tauri::webview::{NewWindowResponse, WebviewWindowBuilder};
use tauri::{AppHandle, Manager, RunEvent, WebviewUrl, WindowEvent, Wry};
use tauri_plugin_autostart::ManagerExt as _;
use tauri_plugin_dialog::{DialogExt, MessageDialogButtons, MessageDialogKind};
use tauri_plugin_notification::NotificationExt;

use crate::backend::{self, Backend, Link};
use crate::prefs::{Kind, Level, Prefs};
use crate::watch::{self, Health, Hub, PauseStep, Seen, Snapshot, TrayState};

const TRAY_ID: &str = "tradecast";
const WINDOW: &str = "main";
const TRAY_OK: &[u8] = include_bytes!("../icons/tray-ok.png");
const TRAY_WARN: &[u8] = include_bytes!("../icons/tray-warn.png");
const TRAY_ALERT: &[u8] = include_bytes!("../icons/tray-alert.png");
/// How often the tray and the notifications ask the node.
const POLL: Duration = Duration::from_secs(2);

/// The command line.
#[derive(Debug, Clone)]
pub struct Options {
    /// The node's data dir (default [`backend::default_data_dir`]).
    pub data: PathBuf,
    /// Start in the tray, window hidden (how autostart launches it).
    pub minimized: bool,
}

/// The app's state, managed by Tauri.
struct Shell {
    data: PathBuf,
    link: Link,
    backend: Mutex<Option<Backend>>,
    prefs: Mutex<Prefs>,
    menu: TrayMenu,
    hub: Mutex<Hub>,
}

/// The tray menu's items that change.
struct TrayMenu {
    status: MenuItem<Wry>,
    pause: CheckMenuItem<Wry>,
    autostart: CheckMenuItem<Wry>,
    levels: Vec<(Kind, Level, CheckMenuItem<Wry>)>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned lock only means another thread panicked mid-update of plain data.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs the app until the trader quits.
pub fn run(options: Options) -> anyhow::Result<()> {
    let autostart_args =
        vec!["--minimized".to_owned(), "--data".to_owned(), options.data.display().to_string()];
    let app = tauri::Builder::default()
        // First: a second start hands over to this one and exits before doing anything.
        .plugin(tauri_plugin_single_instance::init(|app, _argv, _cwd| show_window(app)))
        .plugin(tauri_plugin_notification::init())
        .plugin(tauri_plugin_dialog::init())
        .plugin(
            tauri_plugin_autostart::Builder::new()
                .args(autostart_args)
                .app_name("Tradecast")
                .build(),
        )
        .setup(move |app| {
            setup(app.handle(), &options)?;
            Ok(())
        })
        .on_window_event(|window, event| {
            if let WindowEvent::CloseRequested { api, .. } = event {
                // The node keeps working in the tray; "Quit" in the tray ends the app.
                api.prevent_close();
                let _ = window.hide();
            }
        })
        .build(tauri::generate_context!())?;
    app.run(|handle, event| {
        if let RunEvent::Exit = event {
            stop_backend(handle);
        }
    });
    Ok(())
}

fn stop_backend(app: &AppHandle) {
    let Some(shell) = app.try_state::<Shell>() else { return };
    let backend = lock(&shell.backend).take();
    if let Some(b) = backend {
        tauri::async_runtime::block_on(b.stop());
        tracing::info!(target: "tradecast::desktop", "node stopped");
    }
}

fn setup(app: &AppHandle, options: &Options) -> anyhow::Result<()> {
    let prefs = match Prefs::load(&options.data) {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(target: "tradecast::desktop", error = %e, "desktop.toml ignored; using the defaults");
            Prefs::default()
        }
    };
    let opened = match tauri::async_runtime::block_on(backend::open(&options.data)) {
        Ok(o) => o,
        Err(e) => {
            tracing::error!(target: "tradecast::desktop", error = %e, "the node could not start");
            WebviewWindowBuilder::new(app, WINDOW, WebviewUrl::App("index.html".into()))
                .title("Tradecast")
                .inner_size(720.0, 420.0)
                .build()?;
            app.dialog()
                .message(format!("Tradecast could not start its node:\n\n{e}"))
                .title("Tradecast")
                .kind(MessageDialogKind::Error)
                .show(|_| {});
            return Ok(());
        }
    };
    tracing::info!(target: "tradecast::desktop", api = %opened.link.api_addr(), mode = opened.backend.describe(), created = opened.created, "node ready");
    let hub = match &opened.backend {
        Backend::InProcess { running, .. } => {
            match tradecast_node::sync::hub_pin(running.node.store()) {
                Ok(Some(pin)) => Hub::Enrolled(pin.addr),
                _ => Hub::Standalone,
            }
        }
        Backend::Attached { .. } => Hub::Unknown,
    };
    open_window(app, &opened.link, !options.minimized)?;
    let menu = build_tray(app, &prefs)?;
    app.manage(Shell {
        data: options.data.clone(),
        link: opened.link.clone(),
        backend: Mutex::new(Some(opened.backend)),
        prefs: Mutex::new(prefs),
        menu,
        hub: Mutex::new(hub),
    });
    sync_autostart(app);
    let handle = app.clone();
    tauri::async_runtime::spawn(async move { watch_loop(handle).await });
    Ok(())
}

/// Whether the window may go to `url`: the node's origin only (scheme, host and port).
pub fn same_origin(origin: &tauri::Url, url: &tauri::Url) -> bool {
    url.scheme() == origin.scheme()
        && url.host_str() == origin.host_str()
        && url.port_or_known_default() == origin.port_or_known_default()
}

fn open_window(app: &AppHandle, link: &Link, visible: bool) -> anyhow::Result<()> {
    let origin: tauri::Url = link.origin().parse()?;
    let start: tauri::Url = link.start_url().parse()?;
    let nav_origin = origin.clone();
    WebviewWindowBuilder::new(app, WINDOW, WebviewUrl::External(start))
        .title("Tradecast")
        .inner_size(1280.0, 860.0)
        .min_inner_size(900.0, 600.0)
        .visible(visible)
        .on_navigation(move |url| {
            let ok = same_origin(&nav_origin, url);
            if !ok {
                tracing::warn!(target: "tradecast::desktop", scheme = url.scheme(), host = url.host_str().unwrap_or(""), "navigation outside the node's origin refused");
            }
            ok
        })
        .on_new_window(|_, _| NewWindowResponse::Deny)
        .build()?;
    Ok(())
}

fn show_window(app: &AppHandle) {
    if let Some(w) = app.get_webview_window(WINDOW) {
        let _ = w.show();
        let _ = w.unminimize();
        let _ = w.set_focus();
    }
}

fn tray_image(health: Health) -> Option<Image<'static>> {
    let bytes = match health {
        Health::Ok => TRAY_OK,
        Health::Warn => TRAY_WARN,
        Health::Alert => TRAY_ALERT,
    };
    Image::from_bytes(bytes).ok()
}

fn level_id(kind: Kind, level: Level) -> String {
    format!("notify:{}:{}", kind.key(), level.name())
}

fn build_tray(app: &AppHandle, prefs: &Prefs) -> tauri::Result<TrayMenu> {
    let status = MenuItem::with_id(app, "status", "Starting…", false, None::<&str>)?;
    let open = MenuItem::with_id(app, "open", "Open Tradecast", true, None::<&str>)?;
    let pause = CheckMenuItem::with_id(
        app,
        "pause",
        "Pause auto-copy",
        true,
        prefs.auto_copy_paused,
        None::<&str>,
    )?;
    let close_all =
        MenuItem::with_id(app, "close-all", "Close all positions…", true, None::<&str>)?;
    let autostart = CheckMenuItem::with_id(
        app,
        "autostart",
        "Start at login",
        true,
        prefs.autostart,
        None::<&str>,
    )?;
    let quit = MenuItem::with_id(app, "quit", "Quit Tradecast", true, None::<&str>)?;
    let mut levels = Vec::new();
    let mut kind_menus = Vec::new();
    for kind in Kind::ALL {
        let mut items = Vec::new();
        for level in Level::ALL {
            let word = match level {
                Level::On => "On",
                Level::Silent => "Silent",
                Level::Off => "Off",
            };
            let item = CheckMenuItem::with_id(
                app,
                level_id(kind, level),
                word,
                true,
                prefs.notifications.level(kind) == level,
                None::<&str>,
            )?;
            items.push(item.clone());
            levels.push((kind, level, item));
        }
        let refs: Vec<&dyn tauri::menu::IsMenuItem<Wry>> =
            items.iter().map(|i| i as &dyn tauri::menu::IsMenuItem<Wry>).collect();
        kind_menus.push(Submenu::with_id_and_items(
            app,
            format!("notify:{}", kind.key()),
            kind.label(),
            true,
            &refs,
        )?);
    }
    let kind_refs: Vec<&dyn tauri::menu::IsMenuItem<Wry>> =
        kind_menus.iter().map(|i| i as &dyn tauri::menu::IsMenuItem<Wry>).collect();
    let notifications =
        Submenu::with_id_and_items(app, "notify", "Notifications", true, &kind_refs)?;
    let sep1 = PredefinedMenuItem::separator(app)?;
    let sep2 = PredefinedMenuItem::separator(app)?;
    let sep3 = PredefinedMenuItem::separator(app)?;
    let menu = Menu::with_items(
        app,
        &[
            &status,
            &sep1,
            &open,
            &pause,
            &close_all,
            &sep2,
            &notifications,
            &autostart,
            &sep3,
            &quit,
        ],
    )?;
    let mut tray = TrayIconBuilder::with_id(TRAY_ID)
        .tooltip("Tradecast")
        .menu(&menu)
        .show_menu_on_left_click(false)
        .on_menu_event(on_menu)
        .on_tray_icon_event(|tray: &TrayIcon, event| {
            if let TrayIconEvent::Click {
                button: MouseButton::Left,
                button_state: MouseButtonState::Up,
                ..
            } = event
            {
                show_window(tray.app_handle());
            }
        });
    if let Some(img) = tray_image(Health::Warn) {
        tray = tray.icon(img);
    }
    tray.build(app)?;
    Ok(TrayMenu { status, pause, autostart, levels })
}

fn on_menu(app: &AppHandle, event: MenuEvent) {
    let id = event.id().as_ref().to_owned();
    match id.as_str() {
        "open" => show_window(app),
        "quit" => app.exit(0),
        "pause" => {
            let app = app.clone();
            tauri::async_runtime::spawn(async move { toggle_pause(&app).await });
        }
        "close-all" => confirm_close_all(app),
        "autostart" => toggle_autostart(app),
        other => {
            if let Some((kind, level)) = parse_level_id(other) {
                set_level(app, kind, level);
            }
        }
    }
}

fn parse_level_id(id: &str) -> Option<(Kind, Level)> {
    let rest = id.strip_prefix("notify:")?;
    let (k, l) = rest.split_once(':')?;
    let kind = Kind::ALL.into_iter().find(|k2| k2.key() == k)?;
    let level = Level::ALL.into_iter().find(|l2| l2.name() == l)?;
    Some((kind, level))
}

fn save_prefs(shell: &Shell, prefs: &Prefs) {
    if let Err(e) = prefs.save(&shell.data) {
        tracing::warn!(target: "tradecast::desktop", error = %e, "desktop.toml not saved");
    }
}

fn set_level(app: &AppHandle, kind: Kind, level: Level) {
    let Some(shell) = app.try_state::<Shell>() else { return };
    let mut prefs = lock(&shell.prefs);
    prefs.notifications.set(kind, level);
    save_prefs(&shell, &prefs);
    for (k, l, item) in &shell.menu.levels {
        if *k == kind {
            let _ = item.set_checked(*l == level);
        }
    }
}

/// Makes the OS login item agree with `desktop.toml` at start.
fn sync_autostart(app: &AppHandle) {
    let Some(shell) = app.try_state::<Shell>() else { return };
    let want = lock(&shell.prefs).autostart;
    let manager = app.autolaunch();
    let is = manager.is_enabled().unwrap_or(false);
    if want != is {
        let r = if want { manager.enable() } else { manager.disable() };
        if let Err(e) = r {
            tracing::warn!(target: "tradecast::desktop", error = %e, "start at login not changed");
        }
    }
}

fn toggle_autostart(app: &AppHandle) {
    let Some(shell) = app.try_state::<Shell>() else { return };
    let mut prefs = lock(&shell.prefs);
    let want = !prefs.autostart;
    let manager = app.autolaunch();
    let r = if want { manager.enable() } else { manager.disable() };
    match r {
        Ok(()) => {
            prefs.autostart = want;
            save_prefs(&shell, &prefs);
        }
        Err(e) => {
            tracing::warn!(target: "tradecast::desktop", error = %e, "start at login not changed");
            notify_always(app, "Start at login", &format!("Not changed: {e}"));
        }
    }
    let _ = shell.menu.autostart.set_checked(prefs.autostart);
}

async fn toggle_pause(app: &AppHandle) {
    let Some(shell) = app.try_state::<Shell>() else { return };
    let paused = lock(&shell.prefs).auto_copy_paused;
    let outcome = match shell.link.policy().await {
        Ok(policy) => match watch::pause_step(&policy, paused) {
            PauseStep::Pause(p) => shell.link.set_policy(&p).await.map(|_| Some(true)),
            PauseStep::Resume(p) => shell.link.set_policy(&p).await.map(|_| Some(false)),
            PauseStep::NotOn => Ok(None),
        },
        Err(e) => Err(e),
    };
    let now_paused = match outcome {
        Ok(Some(p)) => {
            let mut prefs = lock(&shell.prefs);
            prefs.auto_copy_paused = p;
            save_prefs(&shell, &prefs);
            let words = if p {
                "Auto-copy paused: new signals wait for your approval."
            } else {
                "Auto-copy resumed."
            };
            notify_always(app, "Tradecast", words);
            p
        }
        Ok(None) => {
            notify_always(
                app,
                "Auto-copy is off",
                "Signals already wait for your approval. Turn auto-copy on in Settings.",
            );
            false
        }
        Err(e) => {
            tracing::warn!(target: "tradecast::desktop", error = %e, "pause auto-copy failed");
            notify_always(app, "Auto-copy not changed", &e.to_string());
            paused
        }
    };
    let _ = shell.menu.pause.set_checked(now_paused);
}

fn confirm_close_all(app: &AppHandle) {
    let handle = app.clone();
    app.dialog()
        .message(
            "Close every position and pending order that Tradecast opened, on every account?\n\n\
             Positions you opened yourself in MetaTrader 5 stay open.",
        )
        .title("Close all positions")
        .kind(MessageDialogKind::Warning)
        .buttons(MessageDialogButtons::OkCancelCustom("Close all".into(), "Cancel".into()))
        .show(move |confirmed| {
            if confirmed {
                tauri::async_runtime::spawn(async move { close_all(&handle).await });
            }
        });
}

async fn close_all(app: &AppHandle) {
    let Some(shell) = app.try_state::<Shell>() else { return };
    let accounts = match shell.link.status().await {
        Ok(s) => s.accounts.into_iter().map(|a| a.account).collect::<Vec<_>>(),
        Err(e) => {
            notify_always(app, "Close all failed", &e.to_string());
            return;
        }
    };
    if accounts.is_empty() {
        notify_always(app, "Close all", "No account yet: the EA has not connected.");
        return;
    }
    for account in accounts {
        match shell.link.close_all(&account).await {
            Ok(_) => notify_always(
                app,
                "Close all sent",
                &format!("{account}: the EA closes everything Tradecast opened."),
            ),
            Err(e) => notify_always(app, "Close all failed", &format!("{account}: {e}")),
        }
    }
}

/// A notification the trader asked for (a tray action's outcome): not subject to the levels.
fn notify_always(app: &AppHandle, title: &str, body: &str) {
    if let Err(e) = app.notification().builder().title(title).body(body).show() {
        tracing::debug!(target: "tradecast::desktop", error = %e, "notification not shown");
    }
}

fn notify(app: &AppHandle, level: Level, notice: &watch::Notice) {
    let mut b = app.notification().builder().title(&notice.title).body(&notice.body);
    match level {
        Level::Off => return,
        Level::On => b = b.sound("default"),
        Level::Silent => {}
    }
    if let Err(e) = b.show() {
        tracing::debug!(target: "tradecast::desktop", error = %e, "notification not shown");
    }
}

async fn snapshot(link: &Link, hub: Hub) -> Result<Snapshot, backend::LinkError> {
    let status = link.status().await?;
    let approvals = link.approvals().await?;
    let signals = link.signals().await?;
    let copy_log = link.copy_log().await?;
    let mut deals = Vec::new();
    for a in &status.accounts {
        for d in link.deals(&a.account).await? {
            deals.push((a.account.clone(), d));
        }
    }
    Ok(Snapshot { status, approvals, signals, copy_log, deals, hub })
}

fn show_tray(app: &AppHandle, shell: &Shell, state: &TrayState) {
    if let Some(tray) = app.tray_by_id(TRAY_ID) {
        let _ = tray.set_icon(tray_image(state.health));
        let _ = tray.set_tooltip(Some(format!("Tradecast\n{}", state.lines.join("\n"))));
    }
    let _ = shell.menu.status.set_text(state.lines.first().cloned().unwrap_or_default());
}

async fn watch_loop(app: AppHandle) {
    let mut seen = Seen::default();
    let mut last: Option<TrayState> = None;
    loop {
        let Some(shell) = app.try_state::<Shell>() else { return };
        let hub = lock(&shell.hub).clone();
        let state = match snapshot(&shell.link, hub).await {
            Ok(snap) => {
                let levels = lock(&shell.prefs).notifications;
                for n in seen.update(&snap) {
                    notify(&app, levels.level(n.kind), &n);
                }
                watch::tray_state(&snap)
            }
            Err(e) => watch::tray_unreachable(&e.to_string()),
        };
        if last.as_ref() != Some(&state) {
            show_tray(&app, &shell, &state);
            last = Some(state);
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_stays_on_the_nodes_origin() {
        let origin: tauri::Url = "http://127.0.0.1:7342".parse().expect("url");
        let check = |u: &str, ok: bool| {
            let url: tauri::Url = u.parse().expect("url");
            assert_eq!(same_origin(&origin, &url), ok, "{u}");
        };
        check("http://127.0.0.1:7342/", true);
        check("http://127.0.0.1:7342/setup?x=1#y", true);
        check("http://127.0.0.1:7343/", false);
        check("http://localhost:7342/", false);
        check("https://127.0.0.1:7342/", false);
        check("https://example.com/", false);
        check("file:///etc/passwd", false);
        check("tauri://localhost/index.html", false);
    }

    #[test]
    fn level_menu_ids_round_trip() {
        for kind in Kind::ALL {
            for level in Level::ALL {
                assert_eq!(parse_level_id(&level_id(kind, level)), Some((kind, level)));
            }
        }
        assert_eq!(parse_level_id("notify:signal"), None);
        assert_eq!(parse_level_id("notify:signal:loud"), None);
        assert_eq!(parse_level_id("notify:sound:on"), None);
        assert_eq!(parse_level_id("quit"), None);
    }
}
