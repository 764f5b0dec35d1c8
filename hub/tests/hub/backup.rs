//! `tradecast-hub backup` and `restore` (issue 21, part 3): a SQLite round trip through the
//! functions the CLI runs (accounts, devices and audit entries written; an online backup while
//! the hub serves; more writes; restore refused while the hub runs, done after it stops; the
//! audit chain verifies and the later writes are gone), and the PostgreSQL guidance.

use std::process::{Command, Stdio};

use tradecast_hub::backup::{self, BackupError, Outcome};
use tradecast_hub::db::Db;

use crate::helpers::{Backend, TestHub};
use crate::on_both;

on_both!(backup_and_restore_round_trip);

const BIN: &str = env!("CARGO_BIN_EXE_tradecast-hub");

fn cli(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", std::env::temp_dir())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
    (out.status.success(), text(out.stdout), text(out.stderr))
}

async fn emails(db: &Db) -> Vec<String> {
    sqlx::query_scalar("SELECT email FROM users ORDER BY email").fetch_all(db.pool()).await.unwrap()
}

async fn backup_and_restore_round_trip(b: Backend) {
    let mut hub = TestHub::start(b).await;
    let config = hub.state().config.clone();
    let url = hub.db_url.clone();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hub-backup.sqlite3");

    if b == Backend::Postgres {
        // No hand-rolled dump: the PostgreSQL tools, with the exact commands.
        let out = backup::backup(&config, &file).await.unwrap();
        let Outcome::Postgres { command } = &out else { panic!("{out:?}") };
        assert!(
            command.starts_with("pg_dump --format=custom")
                && command.contains(&*file.to_string_lossy())
        );
        let text = out.to_string();
        assert!(text.contains("DATABASE_URL") && !text.contains(&url), "{text}");
        let out = backup::restore(&config, &file).await.unwrap();
        let Outcome::Postgres { command } = out else { panic!() };
        assert!(command.starts_with("pg_restore"), "{command}");
        assert!(!file.exists());
        let (ok, stdout, _) = cli(&["--database-url", &url, "backup", "--out", "/tmp/x.dump"]);
        assert!(
            ok && stdout.contains("pg_dump --format=custom --no-owner --file=/tmp/x.dump"),
            "{stdout}"
        );
        hub.stop().await;
        return;
    }

    // Accounts, a device, audit entries.
    let owner = hub.owner().await;
    let subscriber = hub.user(&owner, "subscriber").await;
    let (_, device) = hub.enrol(&subscriber, "laptop").await;
    let before = tradecast_hub::audit::verify(&hub.db).await.unwrap();
    assert!(before.n_entries >= 3, "{before:?}");

    // Restore is refused while the hub runs on the file.
    let err = backup::restore(&config, &file).await.unwrap_err();
    assert!(matches!(err, BackupError::HubRunning(_)), "{err}");

    // An online backup while the hub serves; never over an existing file.
    let out = backup::backup(&config, &file).await.unwrap();
    let Outcome::Sqlite { path, bytes, migration, audit_entries, audit_head, kept_aside } = &out
    else {
        panic!("{out:?}")
    };
    assert_eq!((path, *audit_entries, audit_head), (&file, before.n_entries, &before.head_hash));
    assert!(*bytes > 0 && *migration >= 50 && kept_aside.is_none());
    assert!(out.to_string().starts_with(&format!("wrote {}", file.display())), "{out}");
    let err = backup::backup(&config, &file).await.unwrap_err();
    assert!(matches!(err, BackupError::Exists(_)), "{err}");
    // The binary does the same (the hub still running).
    let other = dir.path().join("by-cli.sqlite3");
    let (ok, stdout, stderr) =
        cli(&["--database-url", &url, "backup", "--out", &other.to_string_lossy()]);
    assert!(ok, "{stdout}{stderr}");
    assert!(stdout.contains("wrote") && stdout.contains("audit chain ok"), "{stdout}");
    let (ok, _, stderr) =
        cli(&["--database-url", &url, "restore", "--from", &other.to_string_lossy()]);
    assert!(!ok && stderr.contains("a hub is running"), "{stderr}");

    // Later writes.
    let later = hub.user(&owner, "provider").await;
    hub.post(
        &format!("/api/v1/devices/{device}/revoke"),
        Some(&subscriber.token),
        serde_json::json!({}),
    )
    .await
    .ok(200);
    assert!(emails(&hub.db).await.contains(&later.email));

    // A file that is not a hub database is refused, and nothing is replaced.
    hub.started.take().unwrap().stop().await.unwrap();
    let junk = dir.path().join("junk.sqlite3");
    std::fs::write(&junk, b"not a database").unwrap();
    let err = backup::restore(&config, &junk).await.unwrap_err();
    assert!(matches!(err, BackupError::NotAHubDatabase { .. }), "{err}");

    // Restore: the old file kept aside, the backup in place.
    let out = backup::restore(&config, &file).await.unwrap();
    let Outcome::Sqlite { audit_entries, kept_aside, .. } = &out else { panic!("{out:?}") };
    assert_eq!(*audit_entries, before.n_entries);
    let aside = kept_aside.clone().expect("the old database kept aside");
    assert!(aside.exists() && aside.to_string_lossy().contains(".before-restore-"), "{aside:?}");

    // The restored store: the chain verifies, the later writes are gone, a hub starts on it.
    let db = Db::connect(&url, 2).await.unwrap();
    let after = tradecast_hub::audit::verify(&db).await.unwrap();
    assert_eq!(after, before);
    let stored = emails(&db).await;
    assert!(stored.contains(&subscriber.email) && !stored.contains(&later.email), "{stored:?}");
    let revoked: Option<i64> =
        sqlx::query_scalar("SELECT revoked_at_ms FROM devices WHERE id = $1")
            .bind(&device)
            .fetch_one(db.pool())
            .await
            .unwrap();
    assert_eq!(revoked, None);
    db.close().await;
    let restarted = tradecast_hub::start_with(
        config.clone(),
        tradecast_hub::secrets::HubSecrets::generate_ephemeral(),
        tradecast_hub::open_db(&config).await.unwrap(),
        hub.clock.clone(),
    )
    .await
    .unwrap();
    hub.addr = restarted.addr;
    hub.started = Some(restarted);
    hub.login(&subscriber.email, &subscriber.password).await;
    hub.stop().await;
}
