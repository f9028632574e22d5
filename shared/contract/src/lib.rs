//! Conformance suites: one per port, run against every implementation. A backend's test
//! file calls the port's macro with a function that returns a fresh, isolated instance
//! plus a guard that keeps its resources (a temp dir, an emulator namespace) alive.

pub mod blobs;
pub mod bus;
pub mod fakes;
pub mod runtime;
pub mod store;

// The core's modules, by the paths the modules of this crate use.
use gigalixir_core::{deployment, domain, error, messages, model, ports, stack};

/// Keeps a backend's resources alive for the duration of one test.
pub type Guard = Box<dyn std::any::Any + Send>;

/// A name no other test run uses.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// Runs the whole store suite: `store_contract!(make)` where
/// `fn make() -> (Arc<dyn Store>, Guard)`.
#[macro_export]
macro_rules! store_contract {
    ($make:path) => {
        $crate::contract_tests!($make, $crate::store;
            users_are_unique_by_email, api_keys_live_revoke_and_expire,
            apps_are_unique_and_owned, builds_move_forward_only, build_logs_append_in_order,
            releases_number_themselves_idempotently, locks_exclude_other_holders,
            ssh_keys_are_per_account, domains_belong_to_one_app,
            users_change_and_leave_with_their_keys, members_and_activity_belong_to_an_app);
    };
}

/// Runs the whole bus suite: `bus_contract!(make)` where
/// `fn make() -> (Arc<dyn Bus>, Guard)`.
#[macro_export]
macro_rules! bus_contract {
    ($make:path) => {
        $crate::contract_tests!($make, $crate::bus;
            delivers_what_was_published, only_subscriptions_existing_at_publish_receive,
            retries_with_backoff_until_acked, unanswered_deliveries_come_back,
            exhausted_messages_go_to_the_dead_letter_topic);
    };
}

/// Runs the whole blobs suite: `blobs_contract!(make)` where
/// `fn make() -> (Arc<dyn Blobs>, Guard)`.
#[macro_export]
macro_rules! blobs_contract {
    ($make:path) => {
        $crate::contract_tests!($make, $crate::blobs;
            put_get_replace_delete, list_is_by_path_prefix_and_sorted,
            list_of_nothing_covers_every_space, bad_keys_are_refused,
            streams_round_trip, a_failed_stream_stores_nothing,
            concurrent_readers_never_see_partial_objects);
    };
}

/// Runs the whole runtime suite: `runtime_contract!(make)` where
/// `async fn make() -> (runtime::Subject, Guard)`.
#[macro_export]
macro_rules! runtime_contract {
    ($make:path) => {
        $crate::runtime_contract!(@tests $make;
            a_release_goes_live_once_per_version, a_release_phase_reports_and_touches_no_replica,
            a_failed_release_phase_says_why, a_release_that_crashes_leaves_the_previous_one_serving,
            scale_and_a_new_release_replace_replicas, logs_name_their_replica,
            removing_an_app_leaves_nothing);
    };
    (@tests $make:path; $($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let (subject, _guard) = $make().await;
            $crate::runtime::$name(subject).await;
        }
    )*};
}

/// One `#[tokio::test]` per suite function.
#[doc(hidden)]
#[macro_export]
macro_rules! contract_tests {
    ($make:path, $suite:path; $($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let (port, _guard) = $make();
            { use $suite as suite; suite::$name(port).await; }
        }
    )*};
}
