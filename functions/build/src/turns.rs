//! Fair turns for builds in one worker: at most `limit` run at once, an account runs one
//! build at a time, and waiting builds start in the order they arrived, skipping accounts
//! that already have one running — so one tenant's queue of slow builds never holds
//! another tenant's push back.
//!
//! The bus hands the worker more builds than it runs (a waiting room); those wait here
//! for their turn rather than in the bus, so waiting costs no delivery attempt.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

/// The turns of one worker.
#[derive(Debug)]
pub struct Turns {
    limit: usize,
    state: Mutex<State>,
    changed: Notify,
}

#[derive(Debug, Default)]
struct State {
    running: HashMap<String, usize>,
    total: usize,
    waiting: VecDeque<(u64, String)>,
    next: u64,
}

impl State {
    /// Whether `ticket` is the first waiting build that may start now.
    fn may_start(&self, ticket: u64, limit: usize) -> bool {
        if self.total >= limit {
            return false;
        }
        self.waiting
            .iter()
            .find(|(_, account)| self.running.get(account).copied().unwrap_or(0) == 0)
            .is_some_and(|(t, _)| *t == ticket)
    }
}

/// A running build's turn; the next one may start when it is dropped.
#[derive(Debug)]
pub struct Turn {
    turns: Arc<Turns>,
    account: String,
}

impl Drop for Turn {
    fn drop(&mut self) {
        {
            let mut state = self.turns.lock();
            if let Some(n) = state.running.get_mut(&self.account) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    state.running.remove(&self.account);
                }
            }
            state.total = state.total.saturating_sub(1);
        }
        self.turns.changed.notify_waiters();
    }
}

/// A place in the queue, given up if the waiting build goes away (its delivery ended).
struct Waiting<'a> {
    turns: &'a Arc<Turns>,
    ticket: u64,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let removed = {
            let mut state = self.turns.lock();
            let before = state.waiting.len();
            state.waiting.retain(|(t, _)| *t != self.ticket);
            state.waiting.len() != before
        };
        if removed {
            self.turns.changed.notify_waiters();
        }
    }
}

impl Turns {
    /// Turns for `limit` builds at once (at least one).
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            limit: limit.max(1),
            state: Mutex::new(State::default()),
            changed: Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether a build of `account` would have to wait now.
    pub fn busy(&self, account: &str) -> bool {
        let state = self.lock();
        state.total >= self.limit || state.running.contains_key(account)
    }

    /// Waits for a turn of `account`.
    pub async fn wait(self: &Arc<Self>, account: &str) -> Turn {
        let ticket = {
            let mut state = self.lock();
            state.next += 1;
            let ticket = state.next;
            state.waiting.push_back((ticket, account.to_owned()));
            ticket
        };
        let place = Waiting {
            turns: self,
            ticket,
        };
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            {
                let mut state = self.lock();
                if state.may_start(ticket, self.limit) {
                    state.waiting.retain(|(t, _)| *t != ticket);
                    *state.running.entry(account.to_owned()).or_default() += 1;
                    state.total += 1;
                    drop(state);
                    std::mem::forget(place);
                    return Turn {
                        turns: self.clone(),
                        account: account.to_owned(),
                    };
                }
            }
            changed.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn started(turns: &Arc<Turns>, account: &str) -> Option<Turn> {
        tokio::time::timeout(Duration::from_millis(100), turns.wait(account))
            .await
            .ok()
    }

    #[tokio::test]
    async fn one_build_per_account_and_the_others_go_first() {
        let turns = Turns::new(2);
        let u1 = started(&turns, "u").await.expect("u's first build starts");
        // u's second waits although a slot is free; v's starts at once
        let u2 = tokio::spawn({
            let turns = turns.clone();
            async move { turns.wait("u").await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!u2.is_finished());
        let v1 = started(&turns, "v").await.expect("v starts while u waits");
        assert!(turns.busy("w"), "both slots are taken");
        drop(u1);
        let u2 = tokio::time::timeout(Duration::from_secs(1), u2)
            .await
            .expect("u's second starts once its first ends")
            .expect("join");
        drop((u2, v1));
        assert!(!turns.busy("u"));
    }

    #[tokio::test]
    async fn a_waiter_that_goes_away_gives_up_its_place() {
        let turns = Turns::new(1);
        let first = started(&turns, "a").await.expect("a");
        assert!(
            started(&turns, "b").await.is_none(),
            "b waits, then gives up"
        );
        drop(first);
        assert!(
            started(&turns, "c").await.is_some(),
            "c is not behind b's ghost"
        );
    }
}
