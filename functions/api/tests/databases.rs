//! The database routes on a real PostgreSQL cluster (the platform's own, from Debian's
//! `postgresql`) and a real blob directory: what `pg:create` refuses, the daily backups and
//! what they keep, a destroyed app's database and backups gone.

mod common;

use std::sync::Arc;

use axum::http::{Method, StatusCode};
use common::{Api, ADA};
use serde_json::json;
use shared::embedded::FsBlobs;
use shared::ports::{Blobs, Databases};

/// Stops the cluster when the test ends.
struct Stopper(std::path::PathBuf);

impl Drop for Stopper {
    fn drop(&mut self) {
        let dir = self.0.clone();
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(gigalixir_postgres::cluster::stop(&dir))
        })
        .join();
    }
}

async fn can_connect(url: &str) -> bool {
    match tokio_postgres::connect(url, tokio_postgres::NoTls).await {
        Ok((_, conn)) => {
            drop(conn);
            true
        }
        Err(_) => false,
    }
}

#[tokio::test]
async fn databases_are_sized_backed_up_daily_and_go_with_their_app() {
    assert!(
        gigalixir_postgres::debian_bin_dir().is_some(),
        "PostgreSQL's server is not installed: run scripts/test (it installs `postgresql`)"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711))
            .expect("chmod");
    }
    let data = dir.path().join("data");
    std::fs::create_dir(&data).expect("data");
    let _stop = Stopper(data.clone());
    let server = gigalixir_postgres::cluster::start(gigalixir_postgres::cluster::Options {
        data_dir: data.clone(),
        port: 54390,
        listen: Vec::new(),
        app_host: "127.0.0.1".into(),
        app_networks: Vec::new(),
        bin_dir: None,
    })
    .await
    .expect("cluster");
    let blobs: Arc<dyn Blobs> = Arc::new(FsBlobs::open(&dir.path().join("blobs")).expect("blobs"));
    let mut api = Api::new();
    api.state.databases = Some(Arc::new(server) as Arc<dyn Databases>);
    api.state.blobs = Some(blobs.clone());
    let key = api.user(ADA).await;
    api.app(ADA, &key, "shop").await;
    let auth = Some((ADA, key.as_str()));

    // What is not sold is refused, saying what is.
    for (body, says) in [
        (json!({"size": 3}), "0.6, 1.7, 4"),
        (
            json!({"size": 0.6, "version": "POSTGRES_9"}),
            "is not offered",
        ),
        (json!({"size": 0.6, "region": "mars-1"}), "is not offered"),
    ] {
        let r = api
            .call(Method::POST, "/api/apps/shop/databases", auth, Some(body))
            .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
        assert!(r.text.contains(says), "{}", r.text);
    }
    let r = api
        .call(
            Method::POST,
            "/api/apps/shop/databases",
            auth,
            Some(json!({"size": 1.7})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let id = r.body["data"]["id"].as_str().expect("id").to_owned();
    let url = r.body["data"]["url"].as_str().expect("url").to_owned();
    assert!(can_connect(&url).await, "the URL works");
    let record = api.record("shop").await;
    assert_eq!(
        record.config.get("DATABASE_URL").map(|s| s.expose()),
        Some(url.as_str())
    );
    // One free database per app.
    let r = api
        .call(
            Method::POST,
            "/api/apps/shop/free_databases",
            auth,
            Some(json!({})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["data"]["tier"], "FREE");
    let r = api
        .call(
            Method::POST,
            "/api/apps/shop/free_databases",
            auth,
            Some(json!({})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    // The first database stays the app's DATABASE_URL.
    let record = api.record("shop").await;
    assert_eq!(
        record.config.get("DATABASE_URL").map(|s| s.expose()),
        Some(url.as_str())
    );

    // Daily backups: one a day per database, the newest 7 kept.
    gigalixir_api::databases::daily_backups(&api.state).await;
    gigalixir_api::databases::daily_backups(&api.state).await;
    let daily = |app: &shared::model::App| {
        app.databases
            .iter()
            .find(|d| d.id == id)
            .expect("db")
            .backups
            .iter()
            .filter(|b| b.automatic)
            .count()
    };
    assert_eq!(daily(&api.record("shop").await), 1, "one a day");
    for _ in 0..9 {
        // A day passes.
        let mut app = api.record("shop").await;
        for db in &mut app.databases {
            for b in &mut db.backups {
                b.created_at -= chrono::Duration::hours(25);
            }
        }
        api.store().update_app(&app).await.expect("update");
        gigalixir_api::databases::daily_backups(&api.state).await;
    }
    let app = api.record("shop").await;
    assert_eq!(daily(&app), 7);
    let dumps = blobs
        .list(&format!("backups/{id}/"))
        .await
        .expect("list")
        .into_iter()
        .filter(|k| k.ends_with(".dump"))
        .count();
    assert_eq!(dumps, 7, "the dropped backups' blobs are deleted");
    let r = api
        .call(
            Method::GET,
            &format!("/api/apps/shop/databases/{id}/backups"),
            auth,
            None,
        )
        .await;
    assert_eq!(r.body["data"].as_array().map(Vec::len), Some(7));
    assert_eq!(r.body["data"][0]["type"], "DAILY");
    let r = api
        .call(
            Method::POST,
            &format!("/api/apps/shop/databases/{id}/backups/nope/restore"),
            auth,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);

    // An app with a DATABASE_URL of its own keeps it.
    api.app(ADA, &key, "own-db").await;
    let r = api
        .call(
            Method::POST,
            "/api/apps/own-db/configs",
            auth,
            Some(json!({"configs": {"DATABASE_URL": "ecto://me@db.example.com/mine"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = api
        .call(
            Method::POST,
            "/api/apps/own-db/databases",
            auth,
            Some(json!({})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert!(r.body["data"]["config_var"].is_null(), "{}", r.text);
    let own = api.record("own-db").await;
    assert_eq!(
        own.config.get("DATABASE_URL").map(|s| s.expose()),
        Some("ecto://me@db.example.com/mine")
    );
    let r = api
        .call(Method::DELETE, "/api/apps/own-db", auth, None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);

    // The app destroyed: its databases and their backups go.
    let r = api.call(Method::DELETE, "/api/apps/shop", auth, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(!can_connect(&url).await, "the database outlived its app");
    assert!(blobs
        .list(&format!("backups/{id}/"))
        .await
        .expect("list")
        .is_empty());
}
