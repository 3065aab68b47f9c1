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
//! - Time slices ([`Scheduler::preempt_due`]): while requests wait for a
//!   global slot, background jobs of a lower priority give theirs back at
//!   once, and jobs of the same priority after holding them for a slice,
//!   oldest first, only as many as the waiting requests need. A preempted
//!   job asks again and queues behind those that waited: round robin.
//! - At a busy host, a waiting request (foreground above all) takes the
//!   slot of a background holder of a lower priority on that host at once.
//! - A pause of background transfers (a bandwidth window,
//!   [`Scheduler::pause_background`]): background requests get no slot and
//!   wait with [`Waiting::ScheduleWindow`]; background holders are due for
//!   preemption at once; foreground jobs go on.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    time::Duration,
};

use crate::{
    time::{MonoTime, UtcTime},
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
    /// When the slot was granted (or taken).
    since: MonoTime,
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
    /// Jobs told to give their slots back, not yet done.
    preempting: HashSet<JobId>,
    /// Jobs that refused (a transfer that cannot resume): left alone until
    /// they hold no slot.
    exempt: HashSet<JobId>,
    /// The time of the last call that could grant.
    now: MonoTime,
    /// Background transfers are paused until this (`Some(None)`: no end
    /// in sight).
    paused: Option<Option<UtcTime>>,
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
            preempting: HashSet::new(),
            exempt: HashSet::new(),
            now: MonoTime::default(),
            paused: None,
        }
    }

    /// Pauses background transfers until `until` (`Some`), or lets them go
    /// on (`None`); the grants this allows.
    pub fn pause_background(&mut self, until: Option<Option<UtcTime>>) -> Vec<Grant> {
        if self.paused == until {
            return Vec::new();
        }
        self.paused = until;
        self.schedule()
    }

    /// Whether background transfers are paused.
    pub fn background_paused(&self) -> bool {
        self.paused.is_some()
    }

    /// The time for what follows (grants are stamped with it).
    pub fn at(&mut self, now: MonoTime) -> &mut Self {
        if now > self.now {
            self.now = now;
        }
        self
    }

    /// Jobs to preempt now, given time slices of `slice`: see the module
    /// docs. Each job is named once; it should give back its slots (or
    /// [`Scheduler::refused`]).
    pub fn preempt_due(&mut self, now: MonoTime, slice: Duration) -> Vec<JobId> {
        self.at(now);
        if self.paused.is_some() {
            // Every background slot goes back.
            let due: Vec<JobId> = self
                .held
                .iter()
                .filter(|(job, slots)| {
                    !self.preempting.contains(job)
                        && !self.exempt.contains(job)
                        && slots.iter().any(Held::background)
                })
                .map(|(job, _)| *job)
                .collect();
            self.preempting.extend(due.iter().copied());
            return due;
        }
        let mut jobs = self.preempt_for_hosts();
        let waiting: Vec<Priority> = self
            .waiting
            .iter()
            .filter(|(_, (job, _))| matches!(self.blocked.get(job), Some(Waiting::ForSlot { .. })))
            .map(|(key, _)| key.0)
            .collect();
        let Some(best) = waiting.iter().min().copied() else {
            return jobs;
        };
        let need = waiting.iter().filter(|p| **p == best).count();
        // Slots already on their way back count toward the need.
        let coming: usize = self
            .preempting
            .iter()
            .filter_map(|job| self.held.get(job))
            .map(|slots| slots.iter().filter(|h| h.background()).count())
            .sum();
        let mut candidates: Vec<(Priority, MonoTime, JobId, usize)> = self
            .held
            .iter()
            .filter(|(job, _)| !self.preempting.contains(job) && !self.exempt.contains(job))
            .filter_map(|(job, slots)| {
                let background: Vec<&Held> = slots.iter().filter(|h| h.background()).collect();
                let priority = background.iter().map(|h| h.priority).max()?;
                let since = background.iter().map(|h| h.since).min()?;
                let due =
                    priority > best || (priority == best && now.saturating_since(since) >= slice);
                due.then_some((priority, since, *job, background.len()))
            })
            .collect();
        // The lowest priority first, then the longest held.
        candidates.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        let mut freed = coming;
        for (_, _, job, slots) in candidates {
            if freed >= need {
                break;
            }
            freed += slots;
            self.preempting.insert(job);
            jobs.push(job);
        }
        jobs
    }

    /// Host limits: a request waiting for a busy host (a foreground one
    /// above all) gets the slot of a background holder of a lower priority
    /// on that host, lowest priority first, only as many as it needs.
    fn preempt_for_hosts(&mut self) -> Vec<JobId> {
        let mut need: BTreeMap<String, (Priority, usize)> = BTreeMap::new();
        for ((priority, _), (job, host)) in &self.waiting {
            if !matches!(self.blocked.get(job), Some(Waiting::HostBusy { .. })) {
                continue;
            }
            let entry = need.entry(host.clone()).or_insert((*priority, 0));
            if *priority == entry.0 {
                entry.1 += 1;
            }
        }
        let mut jobs = Vec::new();
        for (host, (best, wanted)) in need {
            let on_host = |slots: &Vec<Held>| {
                slots
                    .iter()
                    .filter(|h| h.host == host && h.background() && h.priority > best)
                    .count()
            };
            let coming: usize = self
                .preempting
                .iter()
                .filter_map(|job| self.held.get(job))
                .map(on_host)
                .sum();
            let mut candidates: Vec<(Priority, JobId, usize)> = self
                .held
                .iter()
                .filter(|(job, _)| !self.preempting.contains(job) && !self.exempt.contains(job))
                .filter_map(|(job, slots)| {
                    let n = on_host(slots);
                    let priority = slots.iter().map(|h| h.priority).max()?;
                    (n > 0).then_some((priority, *job, n))
                })
                .collect();
            candidates.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
            let mut freed = coming;
            for (_, job, n) in candidates {
                if freed >= wanted {
                    break;
                }
                freed += n;
                self.preempting.insert(job);
                jobs.push(job);
            }
        }
        jobs
    }

    /// A job told to give its slots back could not (a transfer that would
    /// restart from zero): it keeps them, and is not asked again until it
    /// holds none.
    pub fn refused(&mut self, job: JobId) {
        self.preempting.remove(&job);
        self.exempt.insert(job);
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
        let slot = Held {
            host,
            priority,
            since: self.now,
        };
        self.count(&slot, true);
        self.held.entry(job).or_default().push(slot);
    }

    /// How many requests wait for a slot; `usize::MAX` while a released
    /// slot might not simply be granted again: background transfers
    /// paused, a job being preempted, or more slots held than a budget
    /// allows (lowered at runtime, or taken over it). A job that has no
    /// request of its own waiting may give a slot it holds straight to its
    /// next transfer ([`Scheduler::renew`]) only while this is 0: a
    /// release followed by its request would then get it back at once.
    pub fn contention(&self) -> usize {
        let over_budget = self.background_running > self.max_transfers
            || self
                .per_host
                .values()
                .any(|&n| n > self.max_transfers_per_host);
        if self.paused.is_some() || !self.preempting.is_empty() || over_budget {
            usize::MAX
        } else {
            self.waiting.len()
        }
    }

    /// `job` gave the slot it holds for `host` to its next transfer without
    /// giving it back (nothing waited when it looked): the slot counts as
    /// granted now, so that time slices count from the new transfer, as
    /// they would after a release and a grant. Its longest-held slot for
    /// `host`; nothing if it holds none (released meanwhile). If another
    /// job's request came meanwhile, the slot keeps its older time, so
    /// that the newcomer waits no longer for a slice than it would have.
    pub fn renew(&mut self, job: JobId, host: &str) {
        if self.waiting.values().any(|(j, _)| *j != job) {
            return;
        }
        let now = self.now;
        if let Some(slot) = self.held.get_mut(&job).and_then(|held| {
            held.iter_mut()
                .filter(|h| h.host == host)
                .min_by_key(|h| h.since)
        }) {
            slot.since = now;
        }
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
        self.preempting.remove(&job);
        self.exempt.remove(&job);
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
        // The transfer that could not be stopped may be the one that just
        // ended: the job may be asked again (it refuses again if not).
        self.exempt.remove(&job);
        if held.is_empty() {
            self.held.remove(&job);
            self.preempting.remove(&job);
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
            if !foreground && let Some(until) = self.paused {
                blocked.insert(job, Waiting::ScheduleWindow { until });
                continue;
            }
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
    fn a_busy_host_gives_a_lower_priority_slot_to_a_higher_one() {
        let mut s = Scheduler::new(8, 1);
        s.request(job(1), "h".into(), Priority::Low);
        s.request(job(2), "other".into(), Priority::Low);
        // A foreground job for the busy host waits, and the LOW holder of
        // that host (only) is due at once.
        assert!(
            s.request(job(3), "h".into(), Priority::Foreground)
                .is_empty()
        );
        let now = MonoTime::default();
        assert_eq!(s.preempt_due(now, Duration::from_secs(3600)), [job(1)]);
        assert!(s.preempt_due(now, Duration::from_secs(3600)).is_empty());
        assert_eq!(granted(&s.release(job(1), "h")), [(3, "h")]);
        // A foreground holder is never preempted; equal priorities wait.
        assert!(
            s.request(job(4), "h".into(), Priority::Foreground)
                .is_empty()
        );
        assert!(s.preempt_due(now, Duration::from_secs(3600)).is_empty());
        s.request(job(5), "other".into(), Priority::Low);
        assert!(s.preempt_due(now, Duration::from_secs(3600)).is_empty());
        // HIGH waiting for a host held by NORMAL: NORMAL gives way.
        let mut s = Scheduler::new(8, 1);
        s.request(job(6), "h".into(), Priority::Normal);
        assert!(s.request(job(7), "h".into(), Priority::High).is_empty());
        assert_eq!(s.preempt_due(now, Duration::from_secs(3600)), [job(6)]);
    }

    #[test]
    fn a_pause_holds_background_requests_and_takes_their_slots_back() {
        let mut s = Scheduler::new(4, 8);
        s.request(job(1), "h".into(), Priority::Normal);
        s.request(job(2), "h".into(), Priority::Foreground);
        let until = Some(UtcTime::from_unix_millis(1_000));
        assert!(s.pause_background(Some(until)).is_empty());
        assert!(s.background_paused());
        // A new background request waits for the window's end; a
        // foreground one goes.
        assert!(s.request(job(3), "h".into(), Priority::High).is_empty());
        assert_eq!(s.blocked(job(3)), Some(&Waiting::ScheduleWindow { until }));
        assert_eq!(
            granted(&s.request(job(4), "h".into(), Priority::Foreground)),
            [(4, "h")]
        );
        // The background holder gives its slot back (once asked), the
        // foreground ones keep theirs.
        let due = s.preempt_due(MonoTime::default(), Duration::from_secs(3600));
        assert_eq!(due, [job(1)]);
        assert!(
            s.preempt_due(MonoTime::default(), Duration::ZERO)
                .is_empty()
        );
        assert!(s.release(job(1), "h").is_empty());
        // The pause ends: the waiting request goes.
        assert_eq!(granted(&s.pause_background(None)), [(3, "h")]);
        assert!(!s.background_paused());
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

    fn t(secs: u64) -> MonoTime {
        MonoTime::from_elapsed(Duration::from_secs(secs))
    }

    #[test]
    fn equal_priorities_take_turns_by_time_slice() {
        let slice = Duration::from_secs(60);
        let mut s = Scheduler::new(1, 8);
        s.at(t(0));
        assert_eq!(
            granted(&s.request(job(1), "h".into(), Priority::Normal)),
            [(1, "h")]
        );
        s.at(t(10));
        assert!(s.request(job(2), "h".into(), Priority::Normal).is_empty());
        // Not before the holder's slice is over.
        assert!(s.preempt_due(t(59), slice).is_empty());
        assert_eq!(s.preempt_due(t(60), slice), [job(1)]);
        // Asked once: not again while its slot comes back.
        assert!(s.preempt_due(t(61), slice).is_empty());
        // It gives the slot back and asks again: job 2 goes first.
        assert_eq!(granted(&s.release(job(1), "h")), [(2, "h")]);
        assert!(s.request(job(1), "h".into(), Priority::Normal).is_empty());
        assert!(s.preempt_due(t(100), slice).is_empty());
        assert_eq!(s.preempt_due(t(121), slice), [job(2)]);
    }

    #[test]
    fn a_slot_kept_for_the_next_transfer_counts_from_its_renewal() {
        let slice = Duration::from_secs(60);
        let mut s = Scheduler::new(1, 8);
        s.at(t(0));
        assert_eq!(s.contention(), 0);
        s.request(job(1), "h".into(), Priority::Normal);
        // Its next request waits: only its own.
        assert!(s.request(job(1), "h".into(), Priority::Normal).is_empty());
        assert_eq!(s.contention(), 1);
        // It gives its slot to its next transfer at 50 s, not back.
        s.at(t(50));
        s.renew(job(1), "h");
        s.renew(job(1), "elsewhere");
        s.renew(job(9), "h");
        // Another job comes to wait: the slice counts from the renewal.
        s.at(t(55));
        assert!(s.request(job(2), "h".into(), Priority::Normal).is_empty());
        assert_eq!(s.contention(), 2);
        assert!(s.preempt_due(t(109), slice).is_empty());
        assert_eq!(s.preempt_due(t(110), slice), [job(1)]);
        // While a job is told to give its slots back, none is kept.
        assert_eq!(s.contention(), usize::MAX);
        // A renewal that comes after another job began to wait changes
        // nothing: job 2 waits no longer than it would have.
        let mut r = Scheduler::new(1, 8);
        r.at(t(0));
        r.request(job(1), "h".into(), Priority::Normal);
        r.at(t(30));
        assert!(r.request(job(2), "h".into(), Priority::Normal).is_empty());
        r.renew(job(1), "h");
        assert_eq!(r.preempt_due(t(60), slice), [job(1)]);
        // Slots held over a lowered budget: none is kept until they are
        // back within it (each release then frees one for good).
        let mut b = Scheduler::new(2, 8);
        b.request(job(1), "h".into(), Priority::Normal);
        b.request(job(1), "h".into(), Priority::Normal);
        assert_eq!(b.contention(), 0);
        assert!(b.set_budgets(1, 8).is_empty());
        assert_eq!(b.contention(), usize::MAX);
        assert!(b.release(job(1), "h").is_empty());
        assert_eq!(b.contention(), 0);
        // Likewise over a lowered per-host limit.
        assert!(b.set_budgets(1, 0).is_empty());
        assert_eq!(b.contention(), 0, "a limit of 0 counts as 1");
        b.take(job(1), "h".into(), Priority::Foreground);
        assert_eq!(b.contention(), usize::MAX);
        // Background transfers paused: none is kept either.
        let mut p = Scheduler::new(1, 8);
        p.pause_background(Some(None));
        assert_eq!(p.contention(), usize::MAX);
        p.pause_background(None);
        assert_eq!(p.contention(), 0);
    }

    #[test]
    fn a_waiting_higher_priority_preempts_lower_ones_at_once_and_only_as_needed() {
        let slice = Duration::from_secs(60);
        let mut s = Scheduler::new(2, 8);
        s.at(t(0));
        s.request(job(1), "h".into(), Priority::Low);
        s.request(job(2), "h".into(), Priority::Normal);
        s.at(t(5));
        assert!(s.request(job(3), "h".into(), Priority::High).is_empty());
        // One slot is needed: the lowest priority gives it back.
        assert_eq!(s.preempt_due(t(6), slice), [job(1)]);
        // A foreground job never waits for a global slot: no preemption
        // for it, and foreground holders are never preempted.
        s.request(job(4), "h".into(), Priority::Foreground);
        assert!(s.preempt_due(t(7), slice).is_empty());
    }

    #[test]
    fn a_job_that_refuses_is_left_alone_and_another_is_asked() {
        let slice = Duration::from_secs(1);
        let mut s = Scheduler::new(2, 8);
        s.at(t(0));
        s.request(job(1), "h".into(), Priority::Normal);
        s.at(t(1));
        s.request(job(2), "h".into(), Priority::Normal);
        s.at(t(2));
        assert!(s.request(job(3), "h".into(), Priority::Normal).is_empty());
        assert_eq!(s.preempt_due(t(3), slice), [job(1)]);
        s.refused(job(1));
        assert_eq!(s.preempt_due(t(4), slice), [job(2)]);
    }

    #[test]
    fn a_job_that_refused_is_asked_again_once_one_of_its_transfers_ends() {
        // Job 1 holds two slots; the transfer that could not stop may be
        // the one that ends, so a release makes it a candidate again.
        let slice = Duration::from_secs(1);
        let mut s = Scheduler::new(2, 8);
        s.at(t(0));
        s.request(job(1), "h".into(), Priority::Normal);
        s.request(job(1), "h".into(), Priority::Normal);
        s.at(t(2));
        assert!(s.request(job(2), "h".into(), Priority::Normal).is_empty());
        assert_eq!(s.preempt_due(t(3), slice), [job(1)]);
        s.refused(job(1));
        assert!(s.preempt_due(t(4), slice).is_empty());
        // One of its transfers ends: job 2 gets that slot, and job 1 is a
        // candidate again once someone waits.
        assert_eq!(s.release(job(1), "h").len(), 1);
        assert!(s.request(job(3), "h".into(), Priority::Normal).is_empty());
        assert_eq!(s.preempt_due(t(5), slice), [job(1)]);
    }

    /// Fairness: three jobs of one priority sharing one slot, each asking
    /// again as soon as it is preempted: no job waits more than two slices.
    #[test]
    fn no_job_waits_more_than_the_others_slices() {
        let slice = Duration::from_secs(60);
        let mut s = Scheduler::new(1, 8);
        s.at(t(0));
        let mut last_start = HashMap::new();
        for n in 1..=3 {
            for g in s.request(job(n), "h".into(), Priority::Normal) {
                last_start.insert(g.job, 0u64);
            }
        }
        for now in 1..=1_000u64 {
            for preempted in s.preempt_due(t(now), slice) {
                s.at(t(now));
                for g in s.release(preempted, "h") {
                    last_start.insert(g.job, now);
                }
                assert!(
                    s.request(preempted, "h".into(), Priority::Normal)
                        .is_empty()
                );
            }
            for n in 1..=3 {
                let since = last_start.get(&job(n)).copied().unwrap_or(0);
                assert!(
                    now - since <= 3 * 60,
                    "job {n} waited since {since} at {now}"
                );
            }
        }
    }
}
