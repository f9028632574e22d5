//! The release step's other triggers. Under AWS Lambda, a Pub/Sub push delivered to the
//! function's URL arrives as a real Function URL (API Gateway v2) event whose body is the
//! push envelope; `lambda_http`'s adapter — the one `lambda_http::run` wraps the router in —
//! hands it to the same router Cloud Run serves. As a pull worker (`--pull`), the service
//! glue pulls the function's subscriptions into that router.

use gigalixir_release::router;
use lambda_http::request::LambdaRequest;
use lambda_http::tower::ServiceExt;
use lambda_http::{Adapter, Context, LambdaEvent};
use serde_json::Value;
use shared::deployment::{Function, Settings};
use shared::domain::{BuildId, ReleaseVersion};
use shared::messages::{Envelope, Event, Topic};
use shared::model::{BuildState, SlugRef};
use shared::ports::{Bus, Store};

mod common;

use common::{world, World, WATCH};

const PUSH: &str = include_str!("data/function-url-pubsub-push.json");
/// The build the fixture's `slug-uploaded` event names.
const BUILD: &str = "0b6f3d2e-5c1a-4f7e-9d8b-2a4c6e8f0a1b";
/// Invokes the function with the fixture event; returns the status Lambda answers with.
async fn invoke(w: &World) -> u64 {
    let request: LambdaRequest = serde_json::from_str(PUSH).expect("an API Gateway v2 event");
    let response = Adapter::from(router(w.state()))
        .oneshot(LambdaEvent::new(request, Context::default()))
        .await
        .expect("the router never fails");
    let response: Value = serde_json::to_value(response).expect("the response serialises");
    response["statusCode"].as_u64().expect("statusCode")
}

#[tokio::test]
async fn a_pushed_slug_uploaded_event_becomes_release_v1_once() {
    let w = world(BuildId(BUILD.into())).await;
    assert_eq!(invoke(&w).await, 204, "acked");
    let app = w.app.clone();
    let releases = w.store.releases(&app).await.expect("releases");
    assert_eq!(releases.len(), 1);
    assert_eq!(releases[0].version, ReleaseVersion(1));
    assert_eq!(releases[0].spec.slug.size, 1234);
    assert_eq!(
        w.store.build(&w.build).await.expect("build").state,
        BuildState::Released
    );
    assert_eq!(w.bus.pending(WATCH).await.expect("pending"), 1);

    // Pub/Sub delivers at least once: the same delivery again is acked, no v2.
    assert_eq!(invoke(&w).await, 204);
    assert_eq!(w.store.releases(&app).await.expect("releases").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_worker_creates_its_subscription_and_releases_what_it_pulls() {
    let w = world(BuildId(BUILD.into())).await;
    let stop = tokio_util::sync::CancellationToken::new();
    let worker = tokio::spawn(shared::service::pull(
        Function::Release,
        router(w.state()),
        w.bus.clone(),
        true,
        Settings::default(),
        stop.clone(),
    ));
    let event = Event::SlugUploaded {
        app: w.app.clone(),
        build: w.build.clone(),
        slug: SlugRef {
            process_types: None,
            stack: None,
            key: "slugs/ab/ab.tgz".into(),
            sha256: "ab".repeat(32),
            size: 1234,
        },
    };
    // A message published before the worker has made its subscription is not delivered
    // to it: publish until one is (the step is idempotent).
    let app = w.app.clone();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while w.store.releases(&app).await.expect("releases").is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "never released");
        w.bus
            .publish(&Topic::SLUG_UPLOADED, &Envelope::event(&event, None))
            .await
            .expect("publish");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    stop.cancel();
    worker
        .await
        .expect("join")
        .expect("the worker stops cleanly");
    assert_eq!(w.store.releases(&app).await.expect("releases").len(), 1);
    assert!(w.bus.pending(WATCH).await.expect("pending") >= 1);
}
