//! The slot policy: which waiting transfer gets a slot. Pure (no I/O, no
//! clock): the engine's `Manager` feeds it requests, releases and changes
//! and carries out the grants it returns.
//!
//! - Background jobs (HIGH, NORMAL, LOW) share a global budget of
//!   `max_transfers` slots; FOREGROUND jobs are outside it.
//! - Every transfer, foreground too, counts against its host's limit of
//!   `max_transfers_per_host`.
//! - Requests are served by priority, then by arrival. A request held back
//!   by its host's limit does not stall the ones behind it (only the global
//!   budget holds lower priorities back: while a higher-priority request
//!   waits for a global slot, so does every lower one, since the budget is
//!   full for all of them).
//! - Why a request got no slot at the last pass is kept for "why is my job
//!   waiting" ([`Waiting::ForSlot`], [`Waiting::HostBusy`]).

use std::collections::{BTreeMap, HashMap};

use crate::{
    types::{JobId, Priority},
    view::Waiting,
};

/// A slot handed to a job for a transfer to `host`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The job.
    pub job: JobId,
    /// The host the slot is for.
    pub host: String,
}

#[derive(Clone, Debug)]
struct Held {
    host: String,
    priority: Priority,
}

impl Held {
    fn background(&self) -> bool {
        self.priority != Priority::Foreground
    }
}

/// The scheduler's state: waiting requests, held slots, budgets.
#[derive(Clone, Debug)]
pub struct Scheduler {
    waiting: BTreeMap<(Priority, u64), (JobId, String)>,
    arrivals: u64,
    held: HashMap<JobId, Vec<Held>>,
    background_running: usize,
    per_host: HashMap<String, usize>,
    blocked: HashMap<JobId, Waiting>,
    max_transfers: usize,
    max_transfers_per_host: usize,
}

impl Scheduler {
    /// No requests yet; budgets of at least 1.
    pub fn new(max_transfers: usize, max_transfers_per_host: usize) -> Self {
        Self {
            waiting: BTreeMap::new(),
            arrivals: 0,
            held: HashMap::new(),
            background_running: 0,
            per_host: HashMap::new(),
            blocked: HashMap::new(),
            max_transfers: max_transfers.max(1),
            max_transfers_per_host: max_transfers_per_host.max(1),
        }
    }

    /// (global budget, per-host limit).
    pub fn budgets(&self) -> (usize, usize) {
        (self.max_transfers, self.max_transfers_per_host)
    }

    /// New budgets: waiting requests they allow are granted at once; slots
    /// held beyond a lowered budget stay until released.
    pub fn set_budgets(&mut self, max_transfers: usize, per_host: usize) -> Vec<Grant> {
        self.max_transfers = max_transfers.max(1);
        self.max_transfers_per_host = per_host.max(1);
        self.schedule()
    }

    /// A job asks for a slot for a transfer to `host`.
    pub fn request(&mut self, job: JobId, host: String, priority: Priority) -> Vec<Grant> {
        self.arrivals += 1;
        self.waiting.insert((priority, self.arrivals), (job, host));
        self.schedule()
    }

    /// A job took a slot without a grant (it restarted a transfer whose
    /// slot it had given back): counted, so that the limits stay true.
    pub fn take(&mut self, job: JobId, host: String, priority: Priority) {
        let slot = Held { host, priority };
        self.count(&slot, true);
        self.held.entry(job).or_default().push(slot);
    }

    /// A job's transfer to `host` ended: its slot is free.
    pub fn release(&mut self, job: JobId, host: &str) -> Vec<Grant> {
        self.free(job, host);
        self.schedule()
    }

    /// A job's priority changed: its waiting requests move to their place
    /// in the new order (keeping their arrival); its held slots enter or
    /// leave the global budget.
    pub fn reprioritize(&mut self, job: JobId, priority: Priority) -> Vec<Grant> {
        let keys: Vec<(Priority, u64)> = self
            .waiting
            .iter()
            .filter(|(_, (j, _))| *j == job)
            .map(|(key, _)| *key)
            .collect();
        for key in keys {
            if let Some(request) = self.waiting.remove(&key) {
                self.waiting.insert((priority, key.1), request);
            }
        }
        let mut slots = self.held.remove(&job).unwrap_or_default();
        for slot in &mut slots {
            self.count(slot, false);
            slot.priority = priority;
            self.count(slot, true);
        }
        if !slots.is_empty() {
            self.held.insert(job, slots);
        }
        self.schedule()
    }

    /// The job is gone: its requests are dropped and its slots freed.
    pub fn forget(&mut self, job: JobId) -> Vec<Grant> {
        self.waiting.retain(|_, (j, _)| *j != job);
        self.blocked.remove(&job);
        for slot in self.held.remove(&job).unwrap_or_default() {
            self.count(&slot, false);
        }
        self.schedule()
    }

    /// Drops every waiting request (the engine stops).
    pub fn clear_waiting(&mut self) {
        self.waiting.clear();
        self.blocked.clear();
    }

    /// Why `job` got no slot at the last pass, if a limit held it back.
    pub fn blocked(&self, job: JobId) -> Option<&Waiting> {
        self.blocked.get(&job)
    }

    /// Transfers running for background jobs, and to `host`.
    pub fn running(&self, host: &str) -> (usize, usize) {
        (
            self.background_running,
            self.per_host.get(host).copied().unwrap_or(0),
        )
    }

    fn count(&mut self, slot: &Held, add: bool) {
        let n = self.per_host.entry(slot.host.clone()).or_default();
        if add {
            *n += 1;
        } else {
            *n = n.saturating_sub(1);
        }
        if *n == 0 {
            self.per_host.remove(&slot.host);
        }
        if slot.background() {
            if add {
                self.background_running += 1;
            } else {
                self.background_running = self.background_running.saturating_sub(1);
            }
        }
    }

    fn free(&mut self, job: JobId, host: &str) {
        let Some(held) = self.held.get_mut(&job) else {
            return;
        };
        let Some(i) = held.iter().position(|h| h.host == host) else {
            return;
        };
        let slot = held.swap_remove(i);
        if held.is_empty() {
            self.held.remove(&job);
        }
        self.count(&slot, false);
    }

    /// Grants every waiting request the limits allow, highest priority
    /// first, and records why the others wait.
    fn schedule(&mut self) -> Vec<Grant> {
        let (max_total, max_host) = (self.max_transfers, self.max_transfers_per_host);
        let keys: Vec<(Priority, u64)> = self.waiting.keys().copied().collect();
        let mut blocked = HashMap::new();
        let mut grants = Vec::new();
        for key in keys {
            let Some((job, host)) = self.waiting.get(&key).cloned() else {
                continue;
            };
            let foreground = key.0 == Priority::Foreground;
            if self.per_host.get(&host).copied().unwrap_or(0) >= max_host {
                blocked.entry(job).or_insert(Waiting::HostBusy {
                    host,
                    limit: max_host,
                });
                continue;
            }
            if !foreground && self.background_running >= max_total {
                let behind = self
                    .held
                    .values()
                    .flatten()
                    .filter(|h| h.background())
                    .map(|h| h.priority)
                    .min()
                    .unwrap_or(key.0);
                blocked.entry(job).or_insert(Waiting::ForSlot {
                    behind,
                    slots: max_total,
                });
                continue;
            }
            self.waiting.remove(&key);
            self.take(job, host.clone(), key.0);
            grants.push(Grant { job, host });
        }
        self.blocked = blocked;
        grants
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::indexing_slicing)]
    use super::*;

    fn job(n: u128) -> JobId {
        JobId(uuid::Uuid::from_u128(n))
    }

    fn granted(grants: &[Grant]) -> Vec<(u128, &str)> {
        grants
            .iter()
            .map(|g| (g.job.0.as_u128(), g.host.as_str()))
            .collect()
    }

    #[test]
    fn foreground_is_outside_the_budget_but_inside_the_host_limit() {
        let mut s = Scheduler::new(1, 2);
        assert_eq!(
            granted(&s.request(job(1), "a".into(), Priority::Normal)),
            [(1, "a")]
        );
        // The budget is full: a background job waits, a foreground one
        // goes at once.
        assert!(s.request(job(2), "b".into(), Priority::High).is_empty());
        assert_eq!(
            granted(&s.request(job(3), "a".into(), Priority::Foreground)),
            [(3, "a")]
        );
        // Host a is at its limit of 2: foreground waits for it too.
        assert!(
            s.request(job(4), "a".into(), Priority::Foreground)
                .is_empty()
        );
        assert_eq!(
            s.blocked(job(4)),
            Some(&Waiting::HostBusy {
                host: "a".into(),
                limit: 2
            })
        );
        assert_eq!(
            s.blocked(job(2)),
            Some(&Waiting::ForSlot {
                behind: Priority::Normal,
                slots: 1
            })
        );
        // Job 3's slot frees host a: job 4 (foreground) gets it, not the
        // background job 2, whose budget is still full.
        assert_eq!(granted(&s.release(job(3), "a")), [(4, "a")]);
        // Job 1's slot frees the budget: job 2 goes.
        assert_eq!(granted(&s.release(job(1), "a")), [(2, "b")]);
    }

    #[test]
    fn a_lower_priority_never_takes_a_global_slot_a_higher_one_waits_for() {
        let mut s = Scheduler::new(1, 8);
        s.request(job(1), "h".into(), Priority::Normal);
        assert!(s.request(job(2), "h".into(), Priority::Low).is_empty());
        assert!(s.request(job(3), "h".into(), Priority::High).is_empty());
        // The freed slot goes to HIGH (arrived later), then NORMAL, then LOW.
        assert_eq!(granted(&s.release(job(1), "h")), [(3, "h")]);
        assert!(s.request(job(4), "h".into(), Priority::Normal).is_empty());
        assert_eq!(granted(&s.release(job(3), "h")), [(4, "h")]);
        assert_eq!(granted(&s.release(job(4), "h")), [(2, "h")]);
    }

    #[test]
    fn a_busy_host_does_not_stall_requests_to_other_hosts() {
        let mut s = Scheduler::new(4, 1);
        s.request(job(1), "busy".into(), Priority::Normal);
        // A HIGH request for the busy host waits; a LOW one for another
        // host goes past it.
        assert!(s.request(job(2), "busy".into(), Priority::High).is_empty());
        assert_eq!(
            granted(&s.request(job(3), "free".into(), Priority::Low)),
            [(3, "free")]
        );
        assert_eq!(s.running("busy"), (2, 1));
    }

    #[test]
    fn budgets_and_priorities_change_at_runtime() {
        let mut s = Scheduler::new(1, 8);
        s.request(job(1), "h".into(), Priority::Normal);
        assert!(s.request(job(2), "h".into(), Priority::Low).is_empty());
        assert!(s.request(job(3), "h".into(), Priority::Low).is_empty());
        // Job 3 raised to foreground: out of the budget, granted at once.
        assert_eq!(
            granted(&s.reprioritize(job(3), Priority::Foreground)),
            [(3, "h")]
        );
        assert_eq!(s.running("h"), (1, 2));
        // Lowered again: its slot counts in the budget (2 of 1 now).
        assert!(s.reprioritize(job(3), Priority::Low).is_empty());
        assert_eq!(s.running("h"), (2, 2));
        // A budget of 3 lets job 2 in.
        assert_eq!(granted(&s.set_budgets(3, 8)), [(2, "h")]);
        // A lowered budget leaves running slots alone and grants nothing.
        assert!(s.set_budgets(1, 8).is_empty());
        assert_eq!(s.running("h"), (3, 3));
        // Forgetting a job frees its slot and drops its new request (the
        // budget of 1 is full, so the request waits): jobs 2 and 3 remain.
        assert!(s.request(job(1), "h".into(), Priority::Normal).is_empty());
        s.forget(job(1));
        assert_eq!(s.running("h"), (2, 2));
        assert!(s.blocked(job(1)).is_none());
    }
}
