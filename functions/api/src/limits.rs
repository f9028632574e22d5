//! What keeps password checks from being a lever against the platform: each costs an
//! Argon2 hash (19 MiB, tens of milliseconds), so
//! - at most [`HASHES_AT_ONCE`] run at a time, on threads of their own, and at most
//!   [`HASHES_WAITING`] wait their turn (beyond, 503 with `Retry-After`), and
//! - repeated failures are answered `429 Too Many Requests` with `Retry-After`, without a
//!   hash: per client address ([`PER_ADDRESS`] failed logins or sign-ups in
//!   [`WINDOW`]; IPv6 by /64, what one host usually holds) and per email from one address
//!   ([`PER_EMAIL`]). An attempt counts as failed before its hash runs and is forgiven
//!   when the password was right, so a burst sent all at once is held back like one sent
//!   in turn. A good password from another address is never held back by someone else's
//!   failures.
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
/// Password hashes waiting for a hashing thread, at most.
pub const HASHES_WAITING: usize = 64;

/// Hashes handed to the threads and not finished.
static QUEUED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
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
                    Ok(job) => {
                        // A hash that panics must not take its thread down with it.
                        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                        QUEUED.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                    }
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
/// threads, in turn. `None` when [`HASHES_WAITING`] already wait (or the threads are
/// gone): the caller answers 503.
pub async fn hashing<T: Send + 'static>(hash: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    use std::sync::atomic::Ordering;
    if QUEUED.fetch_add(1, Ordering::SeqCst) >= HASHES_AT_ONCE + HASHES_WAITING {
        QUEUED.fetch_sub(1, Ordering::SeqCst);
        return None;
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move || {
        let _ = tx.send(hash());
    });
    let sent = HASHERS.lock().ok().and_then(|h| h.send(job).ok());
    if sent.is_none() {
        QUEUED.fetch_sub(1, Ordering::SeqCst);
        return None;
    }
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
    let shown = match address {
        None => "unknown".to_owned(),
        Some(IpAddr::V4(a)) => a.to_string(),
        // One host holds a whole /64 and may pick any address in it.
        Some(IpAddr::V6(a)) => {
            let s = a.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    };
    format!("addr:{shown}")
}

fn email_key(email: &str, address: Option<IpAddr>) -> String {
    format!(
        "email:{}:{}",
        email.to_ascii_lowercase(),
        address_key(address)
    )
}

/// A password check (or a sign-up, which costs a hash too) of `email` from `address`,
/// counted as failed before it runs: `Some(seconds)` when it must wait instead (nothing is
/// counted then). Checked and counted at once, so that parallel attempts cannot all slip
/// in before the first is counted. Requests without a known address (handed to the router
/// in-process) are not counted.
pub fn attempt(email: Option<&str>, address: Option<IpAddr>) -> Option<u64> {
    address?;
    let now = Instant::now();
    let mut failures = FAILURES.lock().ok()?;
    let by_address = failures.wait(&address_key(address), PER_ADDRESS, now);
    let by_email = email.and_then(|e| failures.wait(&email_key(e, address), PER_EMAIL, now));
    if let Some(wait) = by_address.max(by_email) {
        return Some(wait);
    }
    failures.add(address_key(address), now);
    if let Some(email) = email {
        failures.add(email_key(email, address), now);
    }
    None
}

/// A good password: the attempt is forgiven, and its email's failures from this address
/// are forgotten.
pub fn succeeded(email: &str, address: Option<IpAddr>) {
    if let Ok(mut failures) = FAILURES.lock() {
        failures.by_key.remove(&email_key(email, address));
        if let Some(times) = failures.by_key.get_mut(&address_key(address)) {
            times.pop_back();
        }
    }
}

/// Mails (confirmations, resets) sent to one address within [`WINDOW`] before the next
/// waits.
pub const MAILS_PER_RECIPIENT: usize = 5;

/// A mail to `recipient`, counted: `Some(seconds)` when it must wait instead. Counted per
/// recipient whoever asks, so nobody can fill someone's mailbox from many addresses.
pub fn mail_attempt(recipient: &str) -> Option<u64> {
    let now = Instant::now();
    let mut failures = FAILURES.lock().ok()?;
    let key = format!("mail:{}", recipient.to_ascii_lowercase());
    if let Some(wait) = failures.wait(&key, MAILS_PER_RECIPIENT, now) {
        return Some(wait);
    }
    failures.add(key, now);
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_hold_back_their_address_and_email_only() {
        let here: IpAddr = "192.0.2.1".parse().expect("ip");
        let there: IpAddr = "192.0.2.2".parse().expect("ip");
        for _ in 0..PER_EMAIL {
            assert_eq!(attempt(Some("Eve@example.com"), Some(here)), None);
        }
        let wait = attempt(Some("eve@example.com"), Some(here)).expect("held back");
        assert!(wait > 0 && wait <= WINDOW.as_secs());
        assert_eq!(
            attempt(Some("eve@example.com"), Some(there)),
            None,
            "another address"
        );
        assert_eq!(
            attempt(Some("ann@example.com"), Some(here)),
            None,
            "another email"
        );
        for n in 0..PER_ADDRESS {
            let _ = attempt(Some(&format!("x{n}@example.com")), Some(here));
        }
        assert!(
            attempt(Some("ann@example.com"), Some(here)).is_some(),
            "the address"
        );
        succeeded("eve@example.com", Some(there));
        assert_eq!(attempt(Some("eve@example.com"), Some(there)), None);
    }

    #[test]
    fn good_passwords_are_forgiven_and_ipv6_counts_by_64() {
        let host: IpAddr = "198.51.100.7".parse().expect("ip");
        for _ in 0..PER_ADDRESS * 2 {
            assert_eq!(attempt(Some("ok@example.com"), Some(host)), None);
            succeeded("ok@example.com", Some(host));
        }
        let one: IpAddr = "2001:db8:1:2::1".parse().expect("ip");
        let other: IpAddr = "2001:db8:1:2:ffff::9".parse().expect("ip");
        let elsewhere: IpAddr = "2001:db8:1:3::1".parse().expect("ip");
        for n in 0..PER_ADDRESS {
            let from = if n % 2 == 0 { one } else { other };
            assert_eq!(
                attempt(Some(&format!("u{n}@example.com")), Some(from)),
                None
            );
        }
        assert!(
            attempt(Some("new@example.com"), Some(other)).is_some(),
            "the same /64"
        );
        assert_eq!(
            attempt(Some("new@example.com"), Some(elsewhere)),
            None,
            "another /64"
        );
    }
}
