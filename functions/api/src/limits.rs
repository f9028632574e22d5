//! What keeps password checks from being a lever against the platform: each costs an
//! Argon2 hash (19 MiB, tens of milliseconds), so
//! - at most [`HASHES_AT_ONCE`] run at a time, on threads of their own (others wait
//!   their turn), and
//! - repeated failures are answered `429 Too Many Requests` with `Retry-After`, without a
//!   hash: per client address ([`PER_ADDRESS`] failed logins or sign-ups in
//!   [`WINDOW`]) and per email from one address ([`PER_EMAIL`]). A good password from
//!   another address is never held back by someone else's failures.
//!
//! The counts are this process's (an instance of the API); they are bounded in size. A
//! request handed to the router in-process (no connection, no address) is not counted.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::http::request::Parts;

/// Password hashes computed at once.
pub const HASHES_AT_ONCE: usize = 2;
/// How far back failures count.
pub const WINDOW: Duration = Duration::from_secs(300);
/// Failed logins (and sign-ups) from one address within [`WINDOW`] before it waits.
pub const PER_ADDRESS: usize = 30;
/// Failed logins of one email from one address within [`WINDOW`] before it waits.
pub const PER_EMAIL: usize = 10;
/// Addresses and emails remembered at most; beyond, the oldest are forgotten.
const MAX_KEYS: usize = 100_000;

static FAILURES: LazyLock<Mutex<Failures>> = LazyLock::new(|| Mutex::new(Failures::default()));

type Job = Box<dyn FnOnce() + Send>;

/// The hashing threads: [`HASHES_AT_ONCE`] of them, always the same, so that the memory an
/// Argon2 hash takes is reused instead of left behind in a new thread's allocator arena
/// for every hash (which is how a burst of logins grew the platform by gigabytes).
static HASHERS: LazyLock<Mutex<std::sync::mpsc::Sender<Job>>> = LazyLock::new(|| {
    let (tx, rx) = std::sync::mpsc::channel::<Job>();
    let rx = std::sync::Arc::new(Mutex::new(rx));
    for n in 0..HASHES_AT_ONCE {
        let rx = rx.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("password-hash-{n}"))
            .spawn(move || loop {
                let job = match rx.lock() {
                    Ok(rx) => rx.recv(),
                    Err(_) => return,
                };
                match job {
                    Ok(job) => job(),
                    Err(_) => return,
                }
            });
        if let Err(err) = spawned {
            tracing::error!(error = %err, "could not start a password hashing thread");
        }
    }
    Mutex::new(tx)
});

/// Runs `hash` (a blocking Argon2 computation) on one of the [`HASHES_AT_ONCE`] hashing
/// threads, in turn. `None` if the threads are gone.
pub async fn hashing<T: Send + 'static>(hash: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move || {
        let _ = tx.send(hash());
    });
    HASHERS.lock().ok()?.send(job).ok()?;
    rx.await.ok()
}

/// The client's address: the connection's peer. (`X-Forwarded-For` is not trusted: anyone
/// can write it. Behind a load balancer every client would share the proxy's address;
/// reading the balancer's own header is for that deployment to add.)
pub fn client_address(parts: &Parts) -> Option<IpAddr> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| peer.ip())
}

/// The client's address, as an extractor (never rejects).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddress(pub Option<IpAddr>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(client_address(parts)))
    }
}

#[derive(Default)]
struct Failures {
    by_key: HashMap<String, VecDeque<Instant>>,
}

impl Failures {
    fn recent(&mut self, key: &str, now: Instant) -> Option<&mut VecDeque<Instant>> {
        let times = self.by_key.get_mut(key)?;
        while times
            .front()
            .is_some_and(|t| now.duration_since(*t) > WINDOW)
        {
            times.pop_front();
        }
        Some(times)
    }

    /// Seconds until `key` may try again, when it has `limit` failures in the window.
    fn wait(&mut self, key: &str, limit: usize, now: Instant) -> Option<u64> {
        let times = self.recent(key, now)?;
        if times.len() < limit {
            return None;
        }
        let oldest = *times.front()?;
        Some(
            (WINDOW.saturating_sub(now.duration_since(oldest)))
                .as_secs()
                .max(1),
        )
    }

    fn add(&mut self, key: String, now: Instant) {
        if self.by_key.len() >= MAX_KEYS && !self.by_key.contains_key(&key) {
            self.by_key.retain(|_, t| {
                t.back()
                    .is_some_and(|last| now.duration_since(*last) <= WINDOW)
            });
            if self.by_key.len() >= MAX_KEYS {
                self.by_key.clear();
            }
        }
        let times = self.by_key.entry(key).or_default();
        times.push_back(now);
        while times.len() > PER_ADDRESS.max(PER_EMAIL) {
            times.pop_front();
        }
    }
}

fn address_key(address: Option<IpAddr>) -> String {
    format!(
        "addr:{}",
        address.map_or("unknown".to_owned(), |a| a.to_string())
    )
}

fn email_key(email: &str, address: Option<IpAddr>) -> String {
    format!(
        "email:{}:{}",
        email.to_ascii_lowercase(),
        address_key(address)
    )
}

/// `Some(seconds)` when a password check of `email` from `address` must wait. Requests
/// without a known address (handed to the router in-process) are not counted.
pub fn must_wait(email: Option<&str>, address: Option<IpAddr>) -> Option<u64> {
    address?;
    let now = Instant::now();
    let mut failures = FAILURES.lock().ok()?;
    let by_address = failures.wait(&address_key(address), PER_ADDRESS, now);
    let by_email = email.and_then(|e| failures.wait(&email_key(e, address), PER_EMAIL, now));
    by_address.max(by_email)
}

/// Records a failed password check (or a sign-up, which costs a hash too).
pub fn failed(email: Option<&str>, address: Option<IpAddr>) {
    if address.is_none() {
        return;
    }
    let now = Instant::now();
    if let Ok(mut failures) = FAILURES.lock() {
        failures.add(address_key(address), now);
        if let Some(email) = email {
            failures.add(email_key(email, address), now);
        }
    }
}

/// A good password: its email's failures from this address are forgotten.
pub fn succeeded(email: &str, address: Option<IpAddr>) {
    if let Ok(mut failures) = FAILURES.lock() {
        failures.by_key.remove(&email_key(email, address));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_hold_back_their_address_and_email_only() {
        let here: IpAddr = "192.0.2.1".parse().expect("ip");
        let there: IpAddr = "192.0.2.2".parse().expect("ip");
        for _ in 0..PER_EMAIL {
            assert_eq!(must_wait(Some("Eve@example.com"), Some(here)), None);
            failed(Some("eve@example.com"), Some(here));
        }
        let wait = must_wait(Some("eve@example.com"), Some(here)).expect("held back");
        assert!(wait > 0 && wait <= WINDOW.as_secs());
        assert_eq!(
            must_wait(Some("eve@example.com"), Some(there)),
            None,
            "another address"
        );
        assert_eq!(
            must_wait(Some("ann@example.com"), Some(here)),
            None,
            "another email"
        );
        for _ in 0..PER_ADDRESS {
            failed(Some("x@example.com"), Some(here));
        }
        assert!(
            must_wait(Some("ann@example.com"), Some(here)).is_some(),
            "the address"
        );
        succeeded("eve@example.com", Some(there));
        assert_eq!(must_wait(Some("eve@example.com"), Some(there)), None);
    }
}
