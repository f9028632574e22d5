//! The release step through its router, with real push envelopes, on the embedded store
//! and bus; and once end to end through the bus's in-process push delivery.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::Utc;
use futures::FutureExt;
use gigalixir_release::router;
use shared::domain::{BuildId, ReleaseVersion};
use shared::messages::{Delivery, Envelope, Event, Topic};
use shared::model::{BuildState, ReleaseStatus, SlugRef};
use shared::ports::{Bus, Store, SubscriptionSpec};
use shared::push::{PushBody, RouterEndpoint};
use tower::ServiceExt;

mod common;

use common::{world, World, WATCH};

impl World {
    fn uploaded(&self) -> Envelope {
        Envelope::event(
            &Event::SlugUploaded {
                app: self.app.clone(),
                build: self.build.clone(),
                slug: SlugRef {
                    process_types: None,
                    stack: None,
                    key: "slugs/ab/abcd.tgz".into(),
                    sha256: "ab".repeat(32),
                    size: 1234,
                },
            },
            Some("trace-1"),
        )
    }

    async fn push(&self, envelope: &Envelope) -> StatusCode {
        let delivery = Delivery {
            message_id: "1".into(),
            envelope: envelope.clone(),
            attempt: 1,
            subscription: "release.slug-uploaded".into(),
            publish_time: Utc::now(),
        };
        let body = serde_json::to_vec(&PushBody::from_delivery(&delivery, "test")).expect("json");
        self.push_raw(body).await
    }

    async fn push_raw(&self, body: Vec<u8>) -> StatusCode {
        let req = Request::post("/")
            .header("content-type", "application/json")
            .body(Body::from(body))
            .expect("request");
        router(self.state())
            .oneshot(req)
            .await
            .expect("infallible")
            .status()
    }
}

#[tokio::test]
async fn an_uploaded_slug_becomes_release_v1_with_the_config_snapshot() {
    let w = world(BuildId::random()).await;
    assert_eq!(w.push(&w.uploaded()).await, StatusCode::NO_CONTENT);
    let releases = w.store.releases(&w.app).await.expect("releases");
    assert_eq!(releases.len(), 1);
    let v1 = &releases[0];
    assert_eq!(v1.version, ReleaseVersion(1));
    assert_eq!(v1.rollback_id, None);
    assert_eq!(v1.status, ReleaseStatus::Pending);
    assert_eq!(v1.spec.summary, "Deploy 1a2b3c4");
    assert_eq!(v1.spec.config["FOO"].expose(), "bar");
    assert_eq!(v1.spec.slug.size, 1234);
    assert_eq!(
        w.store.build(&w.build).await.expect("build").state,
        BuildState::Released
    );
    assert_eq!(w.bus.pending(WATCH).await.expect("pending"), 1);
}

#[tokio::test]
async fn the_same_message_twice_makes_one_release() {
    let w = world(BuildId::random()).await;
    assert_eq!(w.push(&w.uploaded()).await, StatusCode::NO_CONTENT);
    assert_eq!(w.push(&w.uploaded()).await, StatusCode::NO_CONTENT);
    let releases = w.store.releases(&w.app).await.expect("releases");
    assert_eq!(releases.len(), 1, "a redelivery must not make v2");
    // The event is published again (at least once); deploy is idempotent too.
    assert_eq!(w.bus.pending(WATCH).await.expect("pending"), 2);
}

#[tokio::test]
async fn a_destroyed_app_is_acked_without_a_release() {
    let w = world(BuildId::random()).await;
    w.store.delete_app(&w.app).await.expect("destroy");
    assert_eq!(w.push(&w.uploaded()).await, StatusCode::NO_CONTENT);
    assert_eq!(w.bus.pending(WATCH).await.expect("pending"), 0);
}

#[tokio::test]
async fn malformed_and_foreign_messages_are_acked_and_ignored() {
    let w = world(BuildId::random()).await;
    assert_eq!(
        w.push_raw(b"{\"message\": 7}".to_vec()).await,
        StatusCode::OK
    );
    let other = Envelope::event(
        &Event::BuildRequested {
            app: w.app.clone(),
            build: w.build.clone(),
        },
        None,
    );
    assert_eq!(w.push(&other).await, StatusCode::NO_CONTENT);
    let garbage = Envelope {
        data: b"not json".to_vec(),
        attributes: Default::default(),
    };
    assert_eq!(w.push(&garbage).await, StatusCode::NO_CONTENT);
    assert!(w.store.releases(&w.app).await.expect("releases").is_empty());
    assert_eq!(w.bus.pending(WATCH).await.expect("pending"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_bus_pushes_to_the_router_in_process() {
    let w = world(BuildId::random()).await;
    let spec = SubscriptionSpec::new("release.slug-uploaded", Topic::SLUG_UPLOADED);
    w.bus.ensure_subscription(&spec).await.expect("sub");
    w.bus
        .publish(&Topic::SLUG_UPLOADED, &w.uploaded())
        .await
        .expect("publish");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let endpoint = Arc::new(RouterEndpoint::new(router(w.state()), "/"));
    let bus = w.bus.clone();
    let runner = tokio::spawn(async move {
        bus.deliver(&spec.name, endpoint, stopped.map(|_| ()).boxed())
            .await
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while w
        .bus
        .pending("release.slug-uploaded")
        .await
        .expect("pending")
        > 0
    {
        assert!(tokio::time::Instant::now() < deadline, "never delivered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(stop);
    runner.await.expect("join").expect("deliver");
    assert_eq!(w.store.releases(&w.app).await.expect("releases").len(), 1);
    assert_eq!(w.bus.pending(WATCH).await.expect("pending"), 1);
}
