//! The desktop app's own preferences: `desktop.toml` in the node's data dir, beside the node's
//! `config.toml` (which stays the daemon's and the node's alone). Notification levels per kind
//! (`on`: shown with a sound; `silent`: shown without; `off`: not shown) and whether the app
//! starts at login. A file that does not parse is reported and the defaults are used; the app
//! never panics on it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The file's name in the data dir.
pub const FILE_NAME: &str = "desktop.toml";

/// How a kind of notification is delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Shown, with the system's notification sound.
    On,
    /// Shown without a sound.
    Silent,
    /// Not shown.
    Off,
}

impl Level {
    /// Every level, in menu order.
    pub const ALL: [Level; 3] = [Level::On, Level::Silent, Level::Off];

    /// The word used in the file and the menu.
    pub fn name(self) -> &'static str {
        match self {
            Level::On => "on",
            Level::Silent => "silent",
            Level::Off => "off",
        }
    }
}

/// The kinds of notification the app raises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// A signal waits for the trader's approval (with the time left).
    Signal,
    /// An order filled or a position closed.
    Fill,
    /// The policy skipped a signal (with the reason).
    Skip,
    /// The drawdown guard locked auto mode (or released it).
    Guard,
}

impl Kind {
    /// Every kind, in menu order.
    pub const ALL: [Kind; 4] = [Kind::Signal, Kind::Fill, Kind::Skip, Kind::Guard];

    /// The key in `[notifications]`.
    pub fn key(self) -> &'static str {
        match self {
            Kind::Signal => "signal",
            Kind::Fill => "fill",
            Kind::Skip => "skip",
            Kind::Guard => "guard",
        }
    }

    /// The menu's words.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Signal => "Signals awaiting approval",
            Kind::Fill => "Fills and closes",
            Kind::Skip => "Skipped signals",
            Kind::Guard => "Drawdown guard",
        }
    }
}

/// `[notifications]`: one level per kind. Default: everything on, skips silent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Notifications {
    pub signal: Level,
    pub fill: Level,
    pub skip: Level,
    pub guard: Level,
}

impl Default for Notifications {
    fn default() -> Self {
        Notifications { signal: Level::On, fill: Level::On, skip: Level::Silent, guard: Level::On }
    }
}

impl Notifications {
    /// The level of `kind`.
    pub fn level(&self, kind: Kind) -> Level {
        match kind {
            Kind::Signal => self.signal,
            Kind::Fill => self.fill,
            Kind::Skip => self.skip,
            Kind::Guard => self.guard,
        }
    }

    /// Sets the level of `kind`.
    pub fn set(&mut self, kind: Kind, level: Level) {
        match kind {
            Kind::Signal => self.signal = level,
            Kind::Fill => self.fill = level,
            Kind::Skip => self.skip = level,
            Kind::Guard => self.guard = level,
        }
    }
}

/// `desktop.toml`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Prefs {
    /// Start Tradecast (in the tray) when the user logs in. Default false. The OS login item is
    /// the truth; this mirrors it.
    pub autostart: bool,
    /// Auto-copy was paused from the tray: the policy's approval mode was switched from `auto`
    /// to `manual`, and resuming switches it back. Default false.
    pub auto_copy_paused: bool,
    /// Notification levels.
    pub notifications: Notifications,
}

/// Why the preferences could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PrefsError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The file is not valid TOML for these settings.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the line.
        message: String,
    },
}

impl Prefs {
    /// Reads `desktop.toml` from `data`; a missing file is the defaults.
    pub fn load(data: &Path) -> Result<Prefs, PrefsError> {
        let path = data.join(FILE_NAME);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Prefs::default()),
            Err(source) => return Err(PrefsError::Io { path, source }),
        };
        toml::from_str(&text).map_err(|e| PrefsError::Invalid { path, message: e.to_string() })
    }

    /// Writes `desktop.toml` into `data` (through a temporary file, so a crash leaves the old
    /// one or the new one).
    pub fn save(&self, data: &Path) -> Result<(), PrefsError> {
        let path = data.join(FILE_NAME);
        let tmp = data.join(format!("{FILE_NAME}.tmp"));
        let body = toml::to_string(self)
            .map_err(|e| PrefsError::Invalid { path: path.clone(), message: e.to_string() })?;
        let text = format!(
            "# Tradecast desktop preferences (the node's own settings are in config.toml).\n\
             # Notification levels: on (with sound), silent, off.\n{body}"
        );
        std::fs::write(&tmp, text)
            .map_err(|source| PrefsError::Io { path: tmp.clone(), source })?;
        std::fs::rename(&tmp, &path).map_err(|source| PrefsError::Io { path, source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, expect: Result<Prefs, &str>) {
        let got = toml::from_str::<Prefs>(text).map_err(|e| e.to_string());
        match (got, expect) {
            (Ok(g), Ok(e)) => assert_eq!(g, e, "{text}"),
            (Err(g), Err(e)) => assert!(g.contains(e), "{text}: {g}"),
            (g, e) => panic!("{text}: got {g:?}, expected {e:?}"),
        }
    }

    #[test]
    fn parses_levels_and_refuses_unknown_keys() {
        check("", Ok(Prefs::default()));
        let mut p = Prefs::default();
        p.notifications.skip = Level::Off;
        p.autostart = true;
        check("autostart = true\n[notifications]\nskip = \"off\"\n", Ok(p));
        check("[notifications]\nskip = \"loud\"\n", Err("unknown variant"));
        check("[notifications]\nsound = \"on\"\n", Err("unknown field"));
        check("autostart = 1\n", Err("invalid type"));
    }

    #[test]
    fn saves_and_loads_back_and_reports_a_damaged_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(Prefs::load(dir.path()).expect("missing is default"), Prefs::default());
        let mut p = Prefs::default();
        p.notifications.set(Kind::Fill, Level::Silent);
        p.auto_copy_paused = true;
        p.save(dir.path()).expect("save");
        assert_eq!(Prefs::load(dir.path()).expect("load"), p);
        std::fs::write(dir.path().join(FILE_NAME), "autostart = [").expect("write");
        let err = Prefs::load(dir.path()).expect_err("damaged");
        assert!(matches!(err, PrefsError::Invalid { .. }), "{err}");
    }
}
