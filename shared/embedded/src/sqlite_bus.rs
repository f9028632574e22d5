//! [`Bus`] on SQLite: a durable queue per subscription.
//!
//! `publish` writes the message and one pending delivery per subscription of its topic in
//! one transaction, so a message is never half-published. `deliver` leases due deliveries
//! (lease = ack deadline), pushes them to the endpoint, and deletes them on ack or schedules
//! a retry with backoff. Every lease names the process holding it, and a delivering process
//! keeps a heartbeat row fresh: when it dies (kill -9, a crash), its leases lapse with the
//! heartbeat (seconds), not with the ack deadline (a build's is half an hour), and the next
//! `deliver` on the same file picks the messages up again.

use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{TimeZone, Utc};
use futures::future::BoxFuture;
use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::{watch, Semaphore};

use super::sqlite::{from_json, map_err, now_ms, to_json, Db};
use crate::error::{PortError, PortResult};
use crate::messages::{Delivery, Envelope, Topic};
use crate::ports::bus::{
    Ack, Bus, PushEndpoint, SubscriptionSpec, ATTR_DEAD_LETTER_SUBSCRIPTION, ATTR_DELIVERY_ATTEMPTS,
};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS subscriptions (
    name TEXT PRIMARY KEY,
    topic TEXT NOT NULL,
    ack_deadline_ms INTEGER NOT NULL,
    max_attempts INTEGER NOT NULL,
    min_backoff_ms INTEGER NOT NULL,
    max_backoff_ms INTEGER NOT NULL,
    dead_letter TEXT,
    max_in_flight INTEGER NOT NULL DEFAULT 8
);
CREATE INDEX IF NOT EXISTS subscriptions_topic ON subscriptions (topic);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    data BLOB NOT NULL,
    attributes TEXT NOT NULL,
    published_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS deliveries (
    subscription TEXT NOT NULL,
    message_id INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at INTEGER NOT NULL,
    lease_until INTEGER,
    holder TEXT,
    PRIMARY KEY (subscription, message_id)
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (subscription, next_at);
CREATE TABLE IF NOT EXISTS holders (
    token TEXT PRIMARY KEY,
    alive_until INTEGER NOT NULL
);
";

/// How long a delivering process counts as alive after its last heartbeat.
const HOLDER_TTL: Duration = Duration::from_secs(15);

/// How long `deliver` waits for deliveries in flight once told to stop.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How often to look for due deliveries when nothing wakes the loop (retries, messages
/// published by another process).
const POLL: Duration = Duration::from_millis(200);

/// The embedded bus: a SQLite file.
#[derive(Clone)]
pub struct SqliteBus {
    db: Db,
    /// Bumped on every publish so this process's delivery loops wake at once.
    published: Arc<watch::Sender<u64>>,
    /// Names this process's leases; its row in `holders` says it is alive.
    token: Arc<str>,
    holder_ttl: Duration,
    /// When this process last wrote its heartbeat (ms), shared by its delivery loops.
    last_beat: Arc<AtomicI64>,
}

impl SqliteBus {
    /// Opens or creates the bus in `path`.
    pub fn open(path: &Path) -> PortResult<Self> {
        let db = Db::open(path, SCHEMA)?;
        // Queues created before subscriptions had a delivery limit, or leases a holder.
        db.blocking_call(|c| {
            for (probe, add) in [
                (
                    "SELECT max_in_flight FROM subscriptions LIMIT 0",
                    "ALTER TABLE subscriptions ADD COLUMN max_in_flight INTEGER NOT NULL DEFAULT 8",
                ),
                (
                    "SELECT holder FROM deliveries LIMIT 0",
                    "ALTER TABLE deliveries ADD COLUMN holder TEXT",
                ),
            ] {
                if c.prepare(probe).is_err() {
                    c.execute_batch(add).map_err(map_err)?;
                }
            }
            Ok(())
        })?;
        Ok(Self {
            db,
            published: Arc::new(watch::channel(0).0),
            token: uuid::Uuid::new_v4().to_string().into(),
            holder_ttl: HOLDER_TTL,
            last_beat: Arc::new(AtomicI64::new(0)),
        })
    }

    /// Sets how long this process's leases outlive its last heartbeat (tests shorten it).
    pub fn with_holder_ttl(mut self, ttl: Duration) -> Self {
        self.holder_ttl = ttl;
        self
    }

    /// Says this process is alive, at most every fifth of the holder TTL.
    async fn heartbeat(&self) -> PortResult<()> {
        let ttl = i64::try_from(self.holder_ttl.as_millis()).unwrap_or(i64::MAX);
        let now = now_ms();
        let last = self.last_beat.load(Ordering::Relaxed);
        if now.saturating_sub(last) < ttl / 5 {
            return Ok(());
        }
        self.last_beat.store(now, Ordering::Relaxed);
        let token = self.token.clone();
        self.db
            .call(move |c| {
                c.execute(
                    "INSERT INTO holders (token, alive_until) VALUES (?1, ?2)
                     ON CONFLICT (token) DO UPDATE SET alive_until = ?2",
                    params![&*token, now.saturating_add(ttl)],
                )
                .map_err(map_err)?;
                // Rows of processes gone for a day.
                c.execute(
                    "DELETE FROM holders WHERE alive_until < ?1",
                    [now.saturating_sub(86_400_000)],
                )
                .map_err(map_err)?;
                Ok(())
            })
            .await
    }

    async fn spec(&self, name: &str) -> PortResult<SubscriptionSpec> {
        let name = name.to_owned();
        self.db
            .call(move |c| {
                c.query_row(
                    "SELECT name, topic, ack_deadline_ms, max_attempts, min_backoff_ms,
                            max_backoff_ms, dead_letter, max_in_flight
                     FROM subscriptions WHERE name = ?1",
                    [&name],
                    |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, u64>(2)?,
                            r.get::<_, u32>(3)?,
                            r.get::<_, u64>(4)?,
                            r.get::<_, u64>(5)?,
                            r.get::<_, Option<String>>(6)?,
                            r.get::<_, u32>(7)?,
                        ))
                    },
                )
                .map_err(map_err)
            })
            .await
            .and_then(|(name, topic, ack, max, min_b, max_b, dead, in_flight)| {
                let parse = |t: &str| Topic::parse(t).map_err(|e| PortError::Invalid(e.0));
                Ok(SubscriptionSpec {
                    name,
                    topic: parse(&topic)?,
                    ack_deadline: Duration::from_millis(ack),
                    max_attempts: max,
                    min_backoff: Duration::from_millis(min_b),
                    max_backoff: Duration::from_millis(max_b),
                    dead_letter: dead.as_deref().map(parse).transpose()?,
                    max_in_flight: in_flight,
                })
            })
    }

    /// Leases up to `limit` due deliveries of the subscription: never leased, lease over, or
    /// leased by another process whose heartbeat stopped.
    async fn claim(&self, spec: &SubscriptionSpec, limit: usize) -> PortResult<Vec<Delivery>> {
        let name = spec.name.clone();
        let deadline = i64::try_from(spec.ack_deadline.as_millis()).unwrap_or(i64::MAX);
        let token = self.token.clone();
        self.db
            .call(move |c| {
                let now = now_ms();
                let tx = c.transaction().map_err(map_err)?;
                let claimed: Vec<(i64, u32)> = {
                    let mut stmt = tx
                        .prepare_cached(
                            "UPDATE deliveries SET lease_until = ?3, holder = ?5,
                                 attempts = attempts + 1
                             WHERE subscription = ?1 AND message_id IN (
                                 SELECT d.message_id FROM deliveries d
                                 WHERE d.subscription = ?1 AND d.next_at <= ?2
                                   AND (d.lease_until IS NULL OR d.lease_until <= ?2
                                        OR (d.holder IS NOT ?5 AND NOT EXISTS (
                                            SELECT 1 FROM holders h
                                            WHERE h.token = d.holder AND h.alive_until > ?2)))
                                 ORDER BY d.next_at, d.message_id LIMIT ?4)
                             RETURNING message_id, attempts",
                        )
                        .map_err(map_err)?;
                    let rows = stmt
                        .query_map(
                            params![
                                name,
                                now,
                                now.saturating_add(deadline),
                                limit as i64,
                                &*token
                            ],
                            |r| Ok((r.get(0)?, r.get(1)?)),
                        )
                        .map_err(map_err)?;
                    rows.collect::<Result<_, _>>().map_err(map_err)?
                };
                let mut out = Vec::with_capacity(claimed.len());
                for (id, attempts) in claimed {
                    let (data, attrs, at): (Vec<u8>, String, i64) = tx
                        .query_row(
                            "SELECT data, attributes, published_at FROM messages WHERE id = ?1",
                            [id],
                            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                        )
                        .map_err(map_err)?;
                    out.push(Delivery {
                        message_id: id.to_string(),
                        envelope: Envelope {
                            data,
                            attributes: from_json(&attrs)?,
                        },
                        attempt: attempts,
                        subscription: name.clone(),
                        publish_time: Utc
                            .timestamp_millis_opt(at)
                            .single()
                            .unwrap_or_else(Utc::now),
                    });
                }
                tx.commit().map_err(map_err)?;
                Ok(out)
            })
            .await
    }

    /// Records the outcome of one delivery.
    async fn settle(
        &self,
        spec: &SubscriptionSpec,
        delivery: &Delivery,
        ack: Ack,
    ) -> PortResult<()> {
        let (spec_c, delivery_c) = (spec.clone(), delivery.clone());
        let done = self
            .db
            .call(move |c| {
                let (spec, delivery) = (spec_c, delivery_c);
                let id: i64 = delivery
                    .message_id
                    .parse()
                    .map_err(|_| PortError::Invalid("message id".into()))?;
                let tx = c.transaction().map_err(map_err)?;
                let exhausted = ack == Ack::Retry && delivery.attempt >= spec.max_attempts;
                let published = if ack == Ack::Ack || exhausted {
                    let published = match (&spec.dead_letter, exhausted) {
                        (Some(dead), true) => {
                            let mut env = delivery.envelope.clone();
                            env.attributes
                                .insert(ATTR_DEAD_LETTER_SUBSCRIPTION.into(), spec.name.clone());
                            env.attributes.insert(
                                ATTR_DELIVERY_ATTEMPTS.into(),
                                delivery.attempt.to_string(),
                            );
                            insert_message(&tx, dead, &env)?;
                            true
                        }
                        _ => false,
                    };
                    tx.execute(
                        "DELETE FROM deliveries WHERE subscription = ?1 AND message_id = ?2",
                        params![spec.name, id],
                    )
                    .map_err(map_err)?;
                    tx.execute(
                        "DELETE FROM messages WHERE id = ?1
                         AND NOT EXISTS (SELECT 1 FROM deliveries WHERE message_id = ?1)",
                        [id],
                    )
                    .map_err(map_err)?;
                    published
                } else {
                    let wait = i64::try_from(spec.backoff(delivery.attempt).as_millis())
                        .unwrap_or(i64::MAX);
                    tx.execute(
                        "UPDATE deliveries SET lease_until = NULL, next_at = ?3
                         WHERE subscription = ?1 AND message_id = ?2",
                        params![spec.name, id, now_ms().saturating_add(wait)],
                    )
                    .map_err(map_err)?;
                    false
                };
                tx.commit().map_err(map_err)?;
                Ok((exhausted, published))
            })
            .await?;
        match done {
            (true, true) => {
                self.published.send_modify(|n| *n += 1);
                tracing::warn!(subscription = %spec.name, message = %delivery.message_id,
                    attempts = delivery.attempt, "message moved to the dead-letter topic");
            }
            (true, false) => {
                tracing::error!(subscription = %spec.name, message = %delivery.message_id,
                    attempts = delivery.attempt, "message dropped after its last attempt");
            }
            _ => {}
        }
        Ok(())
    }
}

/// Stores a message and fans it out to the topic's subscriptions. Returns its id.
fn insert_message(tx: &Connection, topic: &Topic, msg: &Envelope) -> PortResult<i64> {
    let now = now_ms();
    tx.execute(
        "INSERT INTO messages (topic, data, attributes, published_at) VALUES (?1, ?2, ?3, ?4)",
        params![topic.as_str(), msg.data, to_json(&msg.attributes)?, now],
    )
    .map_err(map_err)?;
    let id = tx.last_insert_rowid();
    tx.execute(
        "INSERT INTO deliveries (subscription, message_id, next_at)
         SELECT name, ?1, ?2 FROM subscriptions WHERE topic = ?3",
        params![id, now, topic.as_str()],
    )
    .map_err(map_err)?;
    Ok(id)
}

#[async_trait]
impl Bus for SqliteBus {
    async fn publish(&self, topic: &Topic, msg: &Envelope) -> PortResult<String> {
        let (topic, msg) = (topic.clone(), msg.clone());
        let id = self
            .db
            .call(move |c| {
                let tx = c.transaction().map_err(map_err)?;
                let id = insert_message(&tx, &topic, &msg)?;
                tx.commit().map_err(map_err)?;
                Ok(id)
            })
            .await?;
        self.published.send_modify(|n| *n += 1);
        Ok(id.to_string())
    }

    async fn ensure_subscription(&self, spec: &SubscriptionSpec) -> PortResult<()> {
        let spec = spec.clone();
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        self.db
            .call(move |c| {
                c.execute(
                    "INSERT INTO subscriptions (name, topic, ack_deadline_ms, max_attempts,
                         min_backoff_ms, max_backoff_ms, dead_letter, max_in_flight)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                     ON CONFLICT (name) DO UPDATE SET topic = ?2, ack_deadline_ms = ?3,
                         max_attempts = ?4, min_backoff_ms = ?5, max_backoff_ms = ?6,
                         dead_letter = ?7, max_in_flight = ?8",
                    params![
                        spec.name,
                        spec.topic.as_str(),
                        ms(spec.ack_deadline),
                        spec.max_attempts,
                        ms(spec.min_backoff),
                        ms(spec.max_backoff),
                        spec.dead_letter.as_ref().map(Topic::as_str),
                        spec.max_in_flight,
                    ],
                )
                .map_err(map_err)?;
                Ok(())
            })
            .await
    }

    async fn deliver(
        &self,
        subscription: &str,
        endpoint: Arc<dyn PushEndpoint>,
        shutdown: BoxFuture<'static, ()>,
    ) -> PortResult<()> {
        let spec = self.spec(subscription).await?;
        let in_flight = spec.max_in_flight.max(1) as usize;
        let permits = Arc::new(Semaphore::new(in_flight));
        let mut woken = self.published.subscribe();
        let mut shutdown = shutdown;
        loop {
            if let Err(err) = self.heartbeat().await {
                tracing::warn!(subscription = %spec.name, error = %err, "could not write the heartbeat");
            }
            let free = permits.available_permits();
            let batch = if free == 0 {
                Vec::new()
            } else {
                match self.claim(&spec, free).await {
                    Ok(batch) => batch,
                    Err(err) => {
                        tracing::warn!(subscription = %spec.name, error = %err, "could not read the queue");
                        Vec::new()
                    }
                }
            };
            let idle = batch.is_empty();
            for delivery in batch {
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    break;
                };
                let (bus, spec, endpoint) = (self.clone(), spec.clone(), endpoint.clone());
                tokio::spawn(async move {
                    let ack = if delivery.attempt > spec.max_attempts {
                        // Leased before by a process that died: its attempts are spent.
                        Ack::Retry
                    } else {
                        tokio::time::timeout(spec.ack_deadline, endpoint.push(delivery.clone()))
                            .await
                            .unwrap_or(Ack::Retry)
                    };
                    if let Err(err) = bus.settle(&spec, &delivery, ack).await {
                        // The lease will expire and the message come back: at least once.
                        tracing::warn!(subscription = %spec.name, error = %err, "could not record a delivery outcome");
                    }
                    drop(permit);
                });
            }
            if idle {
                tokio::select! {
                    _ = &mut shutdown => break,
                    _ = woken.changed() => {}
                    _ = tokio::time::sleep(POLL) => {}
                }
            } else if futures::poll!(&mut shutdown).is_ready() {
                break;
            }
        }
        // Give deliveries in flight a moment to finish. One that does not (a long build)
        // keeps its lease until this process's heartbeat lapses, and the message comes back
        // after a restart; the steps are idempotent, so it resumes where it stood.
        let _all =
            tokio::time::timeout(SHUTDOWN_GRACE, permits.acquire_many(in_flight as u32)).await;
        Ok(())
    }
}

/// Lists what a subscription still holds, for tests and operators.
impl SqliteBus {
    /// Number of deliveries not yet acked on `subscription`.
    pub async fn pending(&self, subscription: &str) -> PortResult<u64> {
        let name = subscription.to_owned();
        self.db
            .call(move |c| {
                c.query_row(
                    "SELECT COUNT(*) FROM deliveries WHERE subscription = ?1",
                    [name],
                    |r| r.get(0),
                )
                .optional()
                .map_err(map_err)
                .map(|n| n.unwrap_or(0))
            })
            .await
    }
}
