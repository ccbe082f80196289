//! The dispatcher: takes due deliveries from a [`WebhookStore`], signs and sends them, and
//! records what happened.

mod client;
mod schedule;
mod targets;
mod throttle;

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::{JoinHandle, JoinSet};

pub use schedule::{RetrySchedule, ScheduleParseError};

use crate::error::Result;
use crate::model::{Attempt, DeliveryId, DueDelivery, Endpoint, EndpointId, NewMessage, Next};
use crate::policy::{Resolver, SystemResolver, UrlPolicy};
use crate::store::{ClaimSkip, WebhookStore};
use client::{HttpClient, Signed};
use targets::Targets;
use throttle::{Admission, Throttle};

/// Longest a throttled attempt waits in memory (holding a concurrency permit) before it is put
/// back in the store instead.
const MAX_THROTTLE_WAIT: Duration = Duration::from_secs(1);

/// [`Dispatcher::run_once`] claims at least this many deliveries: one outbox round trip per
/// delivery would bound a single delivery stream by the store's commit rate.
const BATCH_CLAIM: usize = 64;

/// [`Dispatcher::run`] keeps up to `max(4 × concurrency, CLAIM_AHEAD)` deliveries claimed
/// ahead of the attempts, claiming again when half of them have been taken. Claims are
/// commits too: large ones keep their number per delivery low.
const CLAIM_AHEAD: usize = 128;

/// Outcomes are recorded in groups of `max(concurrency, RECORD_GROUP)` (one SQLite commit
/// each: a commit's cost is mostly per page written, and a group rewrites about as many
/// pages as a single record)...
const RECORD_GROUP: usize = 64;

/// ... or after this long, whichever comes first: an outcome waits at most this long in
/// memory before its write starts. (A crash loses at most the wait: those deliveries are
/// sent again when their lease ends, as in-flight ones are.)
const RECORD_DELAY: Duration = Duration::from_millis(5);

/// The event emitted when the dispatcher disables an endpoint.
pub const ENDPOINT_DISABLED_EVENT: &str = "webhook_endpoint.disabled";

/// Dispatcher settings. Every default is written here.
#[derive(Debug, Clone)]
pub struct DispatcherConfig {
    /// Deliveries in flight at once (default 32).
    pub concurrency: usize,
    /// Time allowed for one attempt: connect, send, response head and body (default 15 s).
    pub attempt_timeout: Duration,
    /// Waits after the first attempt (default `5s, 5m, 30m, 2h, 5h, 10h, 10h`).
    pub retry_schedule: RetrySchedule,
    /// Random spread applied to each wait, as a fraction (default 0.2: ±20 %).
    pub jitter: f64,
    /// Longest `Retry-After` honoured; longer requests are cut to this (default 10 h). A
    /// `Retry-After` shorter than the schedule's wait does not shorten it.
    pub max_retry_after: Duration,
    /// An endpoint whose attempts have all failed for this long is disabled (default 5 days).
    pub disable_after: Duration,
    /// Attempts per second per endpoint when the endpoint sets no cap (default `None`:
    /// uncapped).
    pub default_max_per_second: Option<u32>,
    /// How long the loop sleeps when nothing is due (default 1 s).
    pub poll_interval: Duration,
    /// How long a claimed delivery stays invisible to other dispatchers (default 45 s: the
    /// attempt timeout + 30 s). After a crash, the delivery is retried when this ends. Keep it
    /// above `attempt_timeout` + 1 s (the longest in-memory throttle wait), or a slow attempt
    /// may be sent twice.
    pub lease: Duration,
    /// Address and URL rules, applied again before every attempt.
    pub url_policy: UrlPolicy,
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        Self {
            concurrency: 32,
            attempt_timeout: Duration::from_secs(15),
            retry_schedule: RetrySchedule::default(),
            jitter: 0.2,
            max_retry_after: Duration::from_secs(10 * 3600),
            disable_after: Duration::from_secs(5 * 24 * 3600),
            default_max_per_second: None,
            poll_interval: Duration::from_secs(1),
            lease: Duration::from_secs(45),
            url_policy: UrlPolicy::new(),
        }
    }
}

/// Environment variable holding the retry schedule, e.g. `5,300,1800` (seconds).
pub const ENV_RETRY_SCHEDULE: &str = "ALIGN_WEBHOOKS_RETRY_SCHEDULE";
/// Environment variable allowing private targets when `1` or `true`.
pub const ENV_ALLOW_PRIVATE_TARGETS: &str = "ALIGN_WEBHOOKS_ALLOW_PRIVATE_TARGETS";
/// Environment variable letting live endpoints use `http` to a local receiver when `1` or
/// `true` (development; see [`UrlPolicy::allow_http_targets`]).
pub const ENV_ALLOW_HTTP_TARGETS: &str = "ALIGN_WEBHOOKS_ALLOW_HTTP_TARGETS";

/// A yes/no setting: `1`/`true`/`yes` or `0`/`false`/`no`/empty.
fn flag(text: &str, name: &'static str) -> crate::error::Result<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" => Ok(true),
        "0" | "false" | "no" | "" => Ok(false),
        _ => Err(crate::error::Error::InvalidSetting(name)),
    }
}

impl DispatcherConfig {
    /// The defaults, with [`ENV_RETRY_SCHEDULE`], [`ENV_ALLOW_PRIVATE_TARGETS`] and
    /// [`ENV_ALLOW_HTTP_TARGETS`] applied from the process environment.
    pub fn from_env() -> crate::error::Result<Self> {
        Self::default().with_settings(|name| std::env::var(name).ok())
    }

    /// Applies the settings `lookup` returns (by environment variable name); a test or a
    /// config-file loader can pass its own lookup.
    pub fn with_settings(
        mut self,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> crate::error::Result<Self> {
        use crate::error::Error;
        if let Some(text) = lookup(ENV_RETRY_SCHEDULE) {
            self.retry_schedule = text
                .parse()
                .map_err(|_| Error::InvalidSetting(ENV_RETRY_SCHEDULE))?;
        }
        if let Some(text) = lookup(ENV_ALLOW_PRIVATE_TARGETS) {
            let allow = flag(&text, ENV_ALLOW_PRIVATE_TARGETS)?;
            self.url_policy = self.url_policy.allow_private_targets(allow);
        }
        if let Some(text) = lookup(ENV_ALLOW_HTTP_TARGETS) {
            let allow = flag(&text, ENV_ALLOW_HTTP_TARGETS)?;
            self.url_policy = self.url_policy.allow_http_targets(allow);
        }
        Ok(self)
    }
}

/// Sends due deliveries with bounded concurrency, retries on the schedule, and disables
/// endpoints that are gone (410) or failing for too long.
///
/// Redirects are never followed (a 3xx is a failed attempt), and the [`UrlPolicy`] is applied
/// before every attempt and on every new connection's DNS answer.
pub struct Dispatcher {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn WebhookStore>,
    config: DispatcherConfig,
    client: HttpClient,
    throttle: Throttle,
    permits: Arc<Semaphore>,
    targets: Targets,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl Dispatcher {
    /// A dispatcher using the system resolver. Call it inside a tokio runtime.
    pub fn new(store: Arc<dyn WebhookStore>, config: DispatcherConfig) -> Result<Self> {
        Self::with_resolver(store, config, Arc::new(SystemResolver))
    }

    /// A dispatcher resolving names through `resolver`.
    pub fn with_resolver(
        store: Arc<dyn WebhookStore>,
        config: DispatcherConfig,
        resolver: Arc<dyn Resolver>,
    ) -> Result<Self> {
        let client = client::build(resolver, config.url_policy, config.attempt_timeout)?;
        let permits = Arc::new(Semaphore::new(config.concurrency.max(1)));
        Ok(Self {
            inner: Arc::new(Inner {
                store,
                config,
                client,
                throttle: Throttle::default(),
                permits,
                targets: Targets::default(),
            }),
        })
    }

    /// Claims up to `max(4 × concurrency, 64)` deliveries due now, sends them (`concurrency`
    /// at a time) and waits for every attempt to be recorded. Returns how many were claimed;
    /// call it again until it returns 0 to drain a backlog, or use [`Dispatcher::run`].
    ///
    /// A claimed delivery whose lease could run out before its attempt ends (slow endpoints
    /// ahead of it in the batch) is handed back to the store unsent, due at once, so no
    /// other dispatcher can claim it while it is in flight. Outcomes are recorded in groups of
    /// `max(concurrency, 64)` (or what has arrived 5 ms after the first of a group), which the
    /// SQLite store commits together.
    pub async fn run_once(&self) -> Result<usize> {
        let claimed_at = Instant::now();
        let claimed = self.claim(BATCH_CLAIM.max(self.batch_limit())).await?;
        let n = claimed.len();
        let recorder = Recorder::new(Arc::clone(&self.inner));
        // Past the first wave, an attempt may start only while its lease still covers it:
        // the attempt timeout plus the longest throttle wait.
        let budget = self.inner.config.attempt_timeout + MAX_THROTTLE_WAIT;
        let first_wave = self.inner.config.concurrency.max(1);
        let mut tasks = JoinSet::new();
        let mut first_error = None;
        for (i, due) in claimed.into_iter().enumerate() {
            let permit = Arc::clone(&self.inner.permits)
                .acquire_owned()
                .await
                .map_err(|_| crate::error::Error::StoreWorker)?;
            if i >= first_wave && claimed_at.elapsed() + budget >= self.inner.config.lease {
                drop(permit);
                if let Err(e) = self.inner.store.postpone(due.delivery.id, Utc::now()).await {
                    first_error.get_or_insert(e);
                }
                continue;
            }
            self.spawn_delivery(&mut tasks, due, permit, recorder.clone());
        }
        while let Some(joined) = tasks.join_next().await {
            if let Ok(Err(e)) = joined {
                first_error.get_or_insert(e);
            }
        }
        if let Err(e) = recorder.finish().await {
            first_error.get_or_insert(e);
        }
        first_error.map_or(Ok(n), Err)
    }

    /// Runs until `shutdown` completes, sleeping `poll_interval` when nothing is due.
    ///
    /// `concurrency` attempt loops take claimed deliveries from a shared queue, one after
    /// the other (no task or wake-up per delivery), while this loop keeps the queue filled:
    /// it keeps up to `max(4 × concurrency, 128)` deliveries claimed ahead and claims again
    /// when half of them have been taken, so attempts never wait on the store. (Only when the
    /// lease leaves room: a delivery that waits in memory must still start its attempt before
    /// the lease ends, see [`DispatcherConfig::lease`]; otherwise it claims only as many as
    /// there are idle attempt loops.) Outcomes are recorded in groups, at most a few
    /// milliseconds after they arrive.
    ///
    /// Slots are shared by organisation (the endpoint owner's): an organisation below its
    /// share, `max(1, concurrency / 4)`, takes any free slot; one at or past it only while
    /// `share` slots stay free for others. Within an organisation, endpoints share its slots
    /// the same way: an endpoint below its share, `max(1, organisation share / 4)`, takes any
    /// slot its organisation may take; one at or past it only while that many stay open to
    /// the organisation's other endpoints. Claims leave out organisations that already have
    /// half the claim-ahead queue waiting or hold their most, and endpoints that hold their
    /// share with deliveries waiting that may not start. So one organisation's slow
    /// receivers or backlog do not delay another's deliveries, and one hanging endpoint does
    /// not delay its own organisation's other endpoints.
    ///
    /// On shutdown, claimed deliveries not yet sent are handed back (due at once), and
    /// in-flight attempts finish and are recorded before it returns.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) -> Result<()> {
        tokio::pin!(shutdown);
        let inner = &self.inner;
        let config = &inner.config;
        let concurrency = config.concurrency.max(1);
        let budget = config.attempt_timeout + MAX_THROTTLE_WAIT;
        let ahead = config.lease > budget;
        let target = if ahead {
            (4 * concurrency).max(CLAIM_AHEAD)
        } else {
            concurrency
        };
        let feed = Arc::new(Feed {
            queue: std::sync::Mutex::default(),
            ready: Notify::new(),
            low: Notify::new(),
            low_water: if ahead { target / 2 } else { 1 },
            closed: std::sync::atomic::AtomicBool::new(false),
            ahead,
            slots: Slots::new(concurrency),
            hold: target + concurrency,
            budget,
            crossed: std::sync::atomic::AtomicBool::new(false),
            lease: config.lease,
        });
        let recorder = Recorder::new(Arc::clone(inner));
        let mut loops = JoinSet::new();
        for _ in 0..concurrency {
            loops.spawn(attempt_loop(
                Arc::clone(inner),
                Arc::clone(&feed),
                recorder.clone(),
            ));
        }
        let mut claiming: Option<JoinHandle<Result<Vec<DueDelivery>>>> = None;
        // After a claim that found nothing (or failed): no new claim before this.
        let mut idle_until: Option<tokio::time::Instant> = None;
        // The most the next claim takes (see below).
        let first_claim = (2 * concurrency).max(16).min(target);
        let mut burst = first_claim;
        // Whether the last claim, which found nothing, left organisations out.
        let mut skipped = false;
        loop {
            if claiming.is_none() && idle_until.is_none() {
                // Claimed deliveries that can no longer start within their lease go back.
                hand_back(inner, feed.sweep(), Utc::now()).await;
                let (queued, free, skip) = feed.claimable();
                let want = if ahead {
                    if queued >= feed.low_water {
                        0
                    } else {
                        // A burst starts with a small claim, so the first attempts start
                        // sooner; each next claim (while the last one's deliveries are being
                        // sent) may be twice as large, up to the target.
                        (target - queued).min(burst)
                    }
                } else if queued == 0 {
                    free
                } else {
                    0
                };
                if want > 0 {
                    let inner = Arc::clone(inner);
                    skipped = !skip.is_empty();
                    claiming = Some(tokio::spawn(async move {
                        inner
                            .store
                            .claim_due_skipping(Utc::now(), want, inner.config.lease, &skip)
                            .await
                    }));
                }
            }
            // Registered before the branches are polled, so a worker's wake-up between the
            // check above and the wait below is not lost.
            let low = feed.low.notified();
            tokio::select! {
                () = &mut shutdown => break,
                claimed = async {
                    match claiming.as_mut() {
                        Some(claim) => claim.await,
                        None => std::future::pending().await,
                    }
                }, if claiming.is_some() => {
                    claiming = None;
                    // A store error (busy database) is retried after the poll interval.
                    match claimed {
                        Ok(Ok(due)) if !due.is_empty() => {
                            burst = (burst * 2).min(target);
                            // An organisation holding its most (queued and in flight) gets
                            // the rest back, due after the poll interval: its backlog does
                            // not fill the queue ahead of other organisations'.
                            let over = feed.push(due);
                            let later = Utc::now()
                                + chrono::Duration::from_std(config.poll_interval)
                                    .unwrap_or_default();
                            hand_back(inner, over, later).await;
                        }
                        _ => {
                            burst = first_claim;
                            idle_until =
                                Some(tokio::time::Instant::now() + config.poll_interval);
                        }
                    }
                }
                () = async {
                    match idle_until {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                }, if idle_until.is_some() => {
                    idle_until = None;
                }
                // An attempt loop took the queue below its low-water mark (or found it
                // empty): claim again; then even before the poll interval ends, if the last
                // claim left out an organisation with enough queued.
                () = low => {
                    if feed.crossed.swap(false, std::sync::atomic::Ordering::AcqRel) && skipped {
                        idle_until = None;
                    }
                }
            }
        }
        feed.closed
            .store(true, std::sync::atomic::Ordering::Release);
        feed.ready.notify_waiters();
        // Hand back what was claimed but not sent (a claim still running included).
        let mut unsent = feed.take_all();
        if let Some(claim) = claiming {
            if let Ok(Ok(due)) = claim.await {
                unsent.extend(due);
            }
        }
        let now = Utc::now();
        for due in unsent {
            // A failure leaves the delivery leased: it is sent once the lease ends.
            let _ = inner.store.postpone(due.delivery.id, now).await;
        }
        while loops.join_next().await.is_some() {}
        // Errors were the store's: those deliveries stay leased and are sent again later.
        let _ = recorder.finish().await;
        Ok(())
    }

    /// Manual retry: sends one delivery again on the next turn, whatever its status.
    pub async fn retry(&self, delivery: DeliveryId) -> Result<()> {
        self.inner.store.retry(delivery, Utc::now()).await
    }

    /// Recovery: re-queues every failed delivery to `endpoint` created since `since`.
    pub async fn recover_failed_since(
        &self,
        endpoint: EndpointId,
        since: DateTime<Utc>,
    ) -> Result<u64> {
        self.inner
            .store
            .recover_failed_since(endpoint, since, Utc::now())
            .await
    }

    /// Sends `due` while holding `permit`, then hands the outcome to `recorder` without it:
    /// the permit bounds requests in flight, and the next request need not wait for this
    /// one's write.
    fn spawn_delivery(
        &self,
        tasks: &mut JoinSet<Result<()>>,
        due: DueDelivery,
        permit: OwnedSemaphorePermit,
        recorder: Recorder,
    ) {
        let inner = Arc::clone(&self.inner);
        tasks.spawn(async move {
            let deadline = tokio::time::sleep(inner.config.attempt_timeout);
            tokio::pin!(deadline);
            let sent = inner.attempt(due, deadline).await;
            drop(permit);
            if let Some(outcome) = sent? {
                recorder.push(outcome);
            }
            Ok(())
        });
    }

    /// How many deliveries [`Dispatcher::run_once`] claims at most, before the floor.
    fn batch_limit(&self) -> usize {
        self.inner.config.concurrency.max(1) * 4
    }

    async fn claim(&self, limit: usize) -> Result<Vec<DueDelivery>> {
        self.inner
            .store
            .claim_due(Utc::now(), limit, self.inner.config.lease)
            .await
    }
}

/// The claimed deliveries [`Dispatcher::run`]'s attempt loops take from.
struct Feed {
    /// Deliveries with the time they were claimed, oldest due first, and the slots' holders.
    queue: std::sync::Mutex<FeedState>,
    /// Wakes attempt loops waiting for deliveries (a push).
    ready: Notify,
    /// Wakes the claiming loop when the queue runs low.
    low: Notify,
    /// Below this many queued, the claiming loop claims again.
    low_water: usize,
    /// Set at shutdown: attempt loops stop once the queue is empty.
    closed: std::sync::atomic::AtomicBool,
    /// Whether deliveries wait in the queue (claimed ahead) and so need their lease checked.
    ahead: bool,
    /// The slots and their shares.
    slots: Slots,
    /// Deliveries one organisation may hold at once, queued and in flight; claimed ones past
    /// it are handed back.
    hold: usize,
    /// The longest an attempt can take (attempt timeout + longest throttle wait).
    budget: Duration,
    /// The claim's lease.
    lease: Duration,
    /// Set when the queue falls below its low-water mark or runs empty.
    crossed: std::sync::atomic::AtomicBool,
}

/// The claimed deliveries, and who holds which slots.
#[derive(Default)]
struct FeedState {
    /// Deliveries with the time they were claimed, oldest due first.
    queue: VecDeque<(DueDelivery, Instant)>,
    /// Attempts in flight.
    in_flight: usize,
    /// Attempts in flight by organisation.
    flying: HashMap<String, usize>,
    /// Attempts in flight by endpoint.
    flying_endpoints: HashMap<EndpointId, usize>,
    /// Deliveries queued or in flight by organisation.
    held: HashMap<String, usize>,
}

/// The attempt loops (slots) and the shares of them (see [`organization_share`] and
/// [`endpoint_share`]).
#[derive(Debug, Clone, Copy)]
struct Slots {
    concurrency: usize,
    organization: usize,
    endpoint: usize,
}

impl Slots {
    fn new(concurrency: usize) -> Self {
        Self {
            concurrency,
            organization: organization_share(concurrency),
            endpoint: endpoint_share(concurrency),
        }
    }
}

impl FeedState {
    /// Whether a delivery to `endpoint` may take a free slot now.
    ///
    /// Its organisation first: while it has fewer than its share in flight, any free slot;
    /// past that, only while more than its share would stay free for the other
    /// organisations. Then the endpoint, the same way within the slots its organisation may
    /// still take (its room): while the endpoint has fewer than its share in flight, any of
    /// them; past that, only while more than the endpoint's share would stay open to the
    /// organisation's other endpoints.
    fn may_start(&self, endpoint: &Endpoint, slots: Slots) -> bool {
        let room = self.room(&endpoint.owner.organization, slots);
        let flying = self
            .flying_endpoints
            .get(&endpoint.id)
            .copied()
            .unwrap_or(0);
        room > 0 && (flying < slots.endpoint || room > slots.endpoint)
    }

    /// How many more deliveries of `organization` may start now: while below its share,
    /// down to no free slot; past it, down to `share` free slots.
    fn room(&self, organization: &str, slots: Slots) -> usize {
        let free = slots.concurrency.saturating_sub(self.in_flight);
        let flying = self.flying.get(organization).copied().unwrap_or(0);
        let below_share = slots.organization.saturating_sub(flying);
        free.min(below_share.max(free.saturating_sub(slots.organization)))
    }
}

/// A fair share of `concurrency` delivery slots for one organisation: `max(1, concurrency / 4)`.
///
/// The dispatcher's rule: an organisation below its share takes any free slot; one at or
/// past it takes a slot only while `share` slots stay free. So one organisation holds at most
/// `concurrency - share` slots (all of them when `concurrency` is 1), and another
/// organisation's delivery always finds a slot until several organisations are each past
/// their share.
pub(crate) fn organization_share(concurrency: usize) -> usize {
    (concurrency / 4).max(1)
}

/// A fair share of an organisation's slots for one of its endpoints: a quarter of the
/// organisation's share, at least 1 (2 of the default 32 slots).
///
/// The same rule one level down: an endpoint below its share takes any slot its
/// organisation may take; one at or past it only while `share` of them stay open to the
/// organisation's other endpoints. So one hanging endpoint holds at most
/// `concurrency - organisation share - endpoint share` slots (22 of 32), and the other
/// endpoints of its organisation still find slots.
pub(crate) fn endpoint_share(concurrency: usize) -> usize {
    organization_share(organization_share(concurrency))
}

fn count_down<K, Q>(map: &mut HashMap<K, usize>, key: &Q)
where
    K: std::borrow::Borrow<Q> + std::hash::Hash + Eq,
    Q: std::hash::Hash + Eq + ?Sized,
{
    if let Some(n) = map.get_mut(key) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            map.remove(key);
        }
    }
}

/// Hands claimed deliveries back to the store, due at `at`. A failure leaves a delivery
/// leased: it is sent once the lease ends.
async fn hand_back(inner: &Inner, deliveries: Vec<DueDelivery>, at: DateTime<Utc>) {
    for due in deliveries {
        let _ = inner.store.postpone(due.delivery.id, at).await;
    }
}

impl Feed {
    fn lock(&self) -> std::sync::MutexGuard<'_, FeedState> {
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether a delivery claimed at `claimed_at` could see its lease end mid-attempt.
    fn stale(&self, claimed_at: Instant) -> bool {
        self.ahead && claimed_at.elapsed() + self.budget >= self.lease
    }

    /// What the next claim should consider: how many queued deliveries it counts (those
    /// that may start now, to endpoints it does not leave out), the free slots, and what to
    /// leave out: organisations with `low_water` or more queued, or holding their most; and
    /// endpoints with `low_water` or more queued, or holding at least their share with
    /// deliveries queued that may not start. So one organisation's backlog (or one slow
    /// endpoint's) neither fills the queue nor is claimed again and again while other
    /// deliveries wait in the store.
    fn claimable(&self) -> (usize, usize, ClaimSkip) {
        let state = self.lock();
        let mut queued: HashMap<&str, usize> = HashMap::new();
        // Per endpoint: queued, and whether any of them may start now.
        let mut by_endpoint: HashMap<EndpointId, (usize, bool)> = HashMap::new();
        for (d, _) in &state.queue {
            *queued
                .entry(d.endpoint.owner.organization.as_str())
                .or_insert(0) += 1;
            let entry = by_endpoint.entry(d.endpoint.id).or_insert((0, false));
            entry.0 += 1;
            entry.1 = entry.1 || state.may_start(&d.endpoint, self.slots);
        }
        let organizations = state
            .held
            .iter()
            .filter(|(org, held)| {
                **held >= self.hold
                    || queued.get(org.as_str()).copied().unwrap_or(0) >= self.low_water
            })
            .map(|(org, _)| org.clone())
            .collect();
        let endpoints = by_endpoint
            .iter()
            .filter(|(id, (n, startable))| {
                let flying = state.flying_endpoints.get(*id).copied().unwrap_or(0);
                *n >= self.low_water || (!startable && flying >= self.slots.endpoint)
            })
            .map(|(id, _)| *id)
            .collect();
        let skip = ClaimSkip {
            organizations,
            endpoints,
        };
        let counted = state
            .queue
            .iter()
            .filter(|(d, _)| {
                !skip.leaves_out(&d.endpoint) && state.may_start(&d.endpoint, self.slots)
            })
            .count();
        (
            counted,
            self.slots.concurrency.saturating_sub(state.in_flight),
            skip,
        )
    }

    /// Queues `due`, except deliveries of an organisation already holding `hold`: those are
    /// returned, to be handed back.
    fn push(&self, due: Vec<DueDelivery>) -> Vec<DueDelivery> {
        let at = Instant::now();
        let mut over = Vec::new();
        {
            let mut state = self.lock();
            for d in due {
                let held = state
                    .held
                    .entry(d.endpoint.owner.organization.clone())
                    .or_insert(0);
                if *held >= self.hold {
                    over.push(d);
                } else {
                    *held += 1;
                    state.queue.push_back((d, at));
                }
            }
        }
        self.ready.notify_waiters();
        over
    }

    /// Takes the queued deliveries that can no longer start within their lease: the front
    /// of the queue, which is in claim order.
    fn sweep(&self) -> Vec<DueDelivery> {
        let mut state = self.lock();
        let mut stale = Vec::new();
        while state.queue.front().is_some_and(|(_, at)| self.stale(*at)) {
            if let Some((d, _)) = state.queue.pop_front() {
                count_down(&mut state.held, &d.endpoint.owner.organization);
                stale.push(d);
            }
        }
        stale
    }

    /// The oldest queued delivery that may start now (see [`FeedState::may_start`]), taking
    /// its slot; wakes the claiming loop when the queue runs low or nothing queued may start.
    fn pop(&self) -> Option<DueDelivery> {
        let mut state = self.lock();
        let found = state
            .queue
            .iter()
            .position(|(d, at)| !self.stale(*at) && state.may_start(&d.endpoint, self.slots));
        let Some((next, _)) = found.and_then(|i| state.queue.remove(i)) else {
            if state.queue.is_empty() {
                self.crossed
                    .store(true, std::sync::atomic::Ordering::Release);
            }
            drop(state);
            self.low.notify_one();
            return None;
        };
        state.in_flight += 1;
        *state
            .flying
            .entry(next.endpoint.owner.organization.clone())
            .or_insert(0) += 1;
        *state.flying_endpoints.entry(next.endpoint.id).or_insert(0) += 1;
        if state.queue.len() + 1 == self.low_water {
            self.crossed
                .store(true, std::sync::atomic::Ordering::Release);
            self.low.notify_one();
        }
        Some(next)
    }

    /// Frees the slot a delivery to `endpoint` of `organization` held. Wakes no one: the
    /// freed slot can start one delivery, and the loop that freed it looks for one next.
    fn done(&self, organization: &str, endpoint: EndpointId) {
        let mut state = self.lock();
        state.in_flight = state.in_flight.saturating_sub(1);
        count_down(&mut state.flying, organization);
        count_down(&mut state.flying_endpoints, &endpoint);
        count_down(&mut state.held, organization);
    }

    fn take_all(&self) -> Vec<DueDelivery> {
        let mut state = self.lock();
        state.held.clear();
        state.queue.drain(..).map(|(d, _)| d).collect()
    }
}

/// One of [`Dispatcher::run`]'s `concurrency` attempt loops: takes the next claimed
/// delivery, sends it (holding a concurrency permit, shared with [`Dispatcher::run_once`]),
/// hands the outcome to `recorder`, and goes on until the feed is closed and empty.
async fn attempt_loop(inner: Arc<Inner>, feed: Arc<Feed>, recorder: Recorder) {
    // One timer for every attempt of this loop, reset each time.
    let deadline = tokio::time::sleep(inner.config.attempt_timeout);
    tokio::pin!(deadline);
    loop {
        // Registered before looking, so a push between the look and the wait wakes it.
        let ready = feed.ready.notified();
        let Some(due) = feed.pop() else {
            if feed.closed.load(std::sync::atomic::Ordering::Acquire) {
                return;
            }
            ready.await;
            continue;
        };
        let organization = due.endpoint.owner.organization.clone();
        let endpoint = due.endpoint.id;
        let Ok(permit) = Arc::clone(&inner.permits).acquire_owned().await else {
            feed.done(&organization, endpoint);
            return;
        };
        // An error is the store's (postponing a throttled delivery): it stays leased and is
        // sent again when the lease ends.
        if let Ok(Some(outcome)) = inner.attempt(due, deadline.as_mut()).await {
            recorder.push(outcome);
        }
        drop(permit);
        feed.done(&organization, endpoint);
    }
}

/// Records outcomes in groups: [`RECORD_GROUP`] at a time, or whatever has arrived once the
/// first of them has waited [`RECORD_DELAY`], and the rest at [`Recorder::finish`]. A group
/// goes to the store in one call, which the SQLite store commits in one transaction.
///
/// Attempt tasks hand their outcomes over through a shared buffer rather than a channel to
/// a recording task: nothing is woken per outcome, only once per group.
#[derive(Clone)]
struct Recorder {
    shared: Arc<RecorderShared>,
}

struct RecorderShared {
    inner: Arc<Inner>,
    group: usize,
    state: std::sync::Mutex<RecorderState>,
}

#[derive(Default)]
struct RecorderState {
    held: Vec<Outcome>,
    /// Counts flushes, so a timer armed for an earlier group does not cut a later one short.
    flushes: u64,
    writes: JoinSet<Result<()>>,
    first_error: Option<crate::error::Error>,
}

impl Recorder {
    fn new(inner: Arc<Inner>) -> Self {
        let group = inner.config.concurrency.max(RECORD_GROUP);
        Self {
            shared: Arc::new(RecorderShared {
                inner,
                group,
                state: std::sync::Mutex::default(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RecorderState> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Holds `outcome` for the next group write; starts the write when the group is full,
    /// and arms the group's timer when it is the first.
    fn push(&self, outcome: Outcome) {
        let mut state = self.lock();
        state.held.push(outcome);
        if state.held.len() >= self.shared.group {
            self.flush(&mut state);
        } else if state.held.len() == 1 {
            let flushes = state.flushes;
            let recorder = self.clone();
            drop(tokio::spawn(async move {
                tokio::time::sleep(RECORD_DELAY).await;
                let mut state = recorder.lock();
                if state.flushes == flushes {
                    recorder.flush(&mut state);
                }
            }));
        }
    }

    fn flush(&self, state: &mut RecorderState) {
        state.flushes += 1;
        while let Some(joined) = state.writes.try_join_next() {
            note_write(joined, &mut state.first_error);
        }
        if state.held.is_empty() {
            return;
        }
        let batch = std::mem::replace(&mut state.held, Vec::with_capacity(self.shared.group));
        let inner = Arc::clone(&self.shared.inner);
        state
            .writes
            .spawn(async move { inner.record_all(batch).await });
    }

    /// Writes what is held and waits for every write; returns the first error.
    async fn finish(&self) -> Result<()> {
        let mut writes = {
            let mut state = self.lock();
            self.flush(&mut state);
            std::mem::take(&mut state.writes)
        };
        let mut first_error = self.lock().first_error.take();
        while let Some(joined) = writes.join_next().await {
            note_write(joined, &mut first_error);
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// Keeps the first error of a group write.
fn note_write(
    joined: std::result::Result<Result<()>, tokio::task::JoinError>,
    first_error: &mut Option<crate::error::Error>,
) {
    match joined {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            first_error.get_or_insert(e);
        }
        Err(_) => {
            first_error.get_or_insert(crate::error::Error::StoreWorker);
        }
    }
}

/// What one attempt produced, waiting to be recorded.
struct Outcome {
    delivery: DeliveryId,
    attempt: Attempt,
    next: Next,
    after: AfterRecord,
}

/// What is checked once an attempt is recorded (see [`Inner::after_record`]).
struct AfterRecord {
    endpoint: EndpointId,
    environment: align_core::Environment,
    gone: bool,
    finished: DateTime<Utc>,
}

impl Inner {
    /// Sends one delivery (after the throughput cap allows it). `None` when the cap put it
    /// back in the store instead.
    async fn attempt(
        &self,
        due: DueDelivery,
        deadline: std::pin::Pin<&mut tokio::time::Sleep>,
    ) -> Result<Option<Outcome>> {
        let DueDelivery {
            delivery,
            message,
            endpoint,
        } = due;
        if let Some(rate) = endpoint
            .max_per_second
            .or(self.config.default_max_per_second)
        {
            match self
                .throttle
                .admit(endpoint.id, rate, Instant::now(), MAX_THROTTLE_WAIT)
            {
                Admission::SendAfter(wait) => {
                    tokio::time::sleep(wait).await;
                    while let Some(hold) = self.throttle.gate(endpoint.id, rate, Instant::now()) {
                        tokio::time::sleep(hold).await;
                    }
                }
                Admission::Postpone(wait) => {
                    let at = Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default();
                    return self.store.postpone(delivery.id, at).await.map(|()| None);
                }
            }
        }
        let now = Utc::now();
        let timestamp = now.timestamp();
        let target = self
            .targets
            .get(&self.config.url_policy, &endpoint.url, endpoint.environment);
        let response = match target {
            Err(refused) => client::Response {
                status: None,
                retry_after: None,
                body: None,
                error: Some(refused),
                latency: Duration::ZERO,
            },
            Ok(uri) => {
                let signature = endpoint.secrets.signature_header(
                    &message.id.0,
                    timestamp,
                    message.payload.as_bytes(),
                    now,
                );
                let signed = Signed {
                    uri,
                    id: &message.id.0,
                    timestamp,
                    signature,
                    body: Bytes::from(message.payload),
                };
                client::send(&self.client, signed, self.config.attempt_timeout, deadline).await
            }
        };
        let attempts = delivery.attempts.saturating_add(1);
        let finished = Utc::now();
        let gone = response.status == Some(http::StatusCode::GONE);
        let next = match response.status {
            Some(s) if s.is_success() => Next::Succeeded,
            _ if gone => Next::Failed,
            _ => match self.config.retry_schedule.after(attempts) {
                None => Next::Failed,
                Some(wait) => {
                    let mut wait = schedule::jittered(wait, self.config.jitter);
                    if let Some(asked) = response
                        .retry_after
                        .as_deref()
                        .and_then(|v| schedule::retry_after(v, finished))
                    {
                        wait = wait.max(asked.min(self.config.max_retry_after));
                    }
                    Next::RetryAt(finished + chrono::Duration::from_std(wait).unwrap_or_default())
                }
            },
        };
        Ok(Some(Outcome {
            delivery: delivery.id,
            after: AfterRecord {
                endpoint: endpoint.id,
                environment: endpoint.environment,
                gone,
                finished,
            },
            attempt: Attempt {
                at: now,
                status: response.status.map(|s| s.as_u16()),
                latency_ms: u64::try_from(response.latency.as_millis()).unwrap_or(u64::MAX),
                response_body: response.body,
                error: response.error,
            },
            next,
        }))
    }

    /// Records a group of attempts (in one store call), then disables any endpoint that
    /// answered 410 or has been failing for too long. Returns the first error; the other
    /// outcomes are still handled.
    async fn record_all(&self, outcomes: Vec<Outcome>) -> Result<()> {
        let (attempts, afters): (Vec<_>, Vec<_>) = outcomes
            .into_iter()
            .map(|o| ((o.delivery, o.attempt, o.next), o.after))
            .unzip();
        let recorded = self.store.record_attempts(attempts).await;
        let mut first_error = None;
        for (after, result) in afters.iter().zip(recorded) {
            let done = match result {
                Ok(failing_since) => self.after_record(after, failing_since).await,
                Err(e) => Err(e),
            };
            if let Err(e) = done {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Disables the endpoint if the recorded attempt got a 410 or ended a failure run that
    /// lasted too long.
    async fn after_record(
        &self,
        after: &AfterRecord,
        failing_since: Option<DateTime<Utc>>,
    ) -> Result<()> {
        let (endpoint, environment) = (after.endpoint, after.environment);
        if after.gone {
            return self
                .disable(endpoint, environment, "the endpoint answered 410 Gone")
                .await;
        }
        if let Some(since) = failing_since {
            let failing_for = (after.finished - since).to_std().unwrap_or_default();
            if failing_for >= self.config.disable_after {
                return self
                    .disable(
                        endpoint,
                        environment,
                        "every attempt failed for longer than the disable threshold",
                    )
                    .await;
            }
        }
        Ok(())
    }

    async fn disable(
        &self,
        endpoint: EndpointId,
        environment: align_core::Environment,
        reason: &str,
    ) -> Result<()> {
        self.store.disable_endpoint(endpoint, reason).await?;
        // The notice goes to the disabled endpoint's own organisation (and project) only.
        let owner = self.store.endpoint(endpoint).await?.owner;
        let now = Utc::now();
        let event = NewMessage {
            event_id: format!("evt_disabled_{endpoint}_{}", now.timestamp_millis()),
            event_type: ENDPOINT_DISABLED_EVENT.to_owned(),
            environment,
            timestamp: now,
            data: serde_json::json!({ "endpointId": endpoint.0.to_string(), "reason": reason }),
            owner,
            endpoint: None,
        };
        self.store.enqueue(event, now).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code: a failure should panic")]

    use super::*;
    use crate::model::Owner;
    use crate::{EndpointKey, EndpointSecrets, SigningSecret};

    fn endpoint(organization: &str) -> Endpoint {
        let key = EndpointKey::Symmetric(SigningSecret::generate().unwrap());
        Endpoint::new(
            align_core::Environment::Sandbox,
            "https://example.com/".to_owned(),
            EndpointSecrets::new(key),
        )
        .owned_by(Owner::organization(organization))
    }

    /// Starts deliveries to `ep` while the rule lets it; returns how many started.
    fn fill(state: &mut FeedState, ep: &Endpoint, slots: Slots) -> usize {
        let mut started = 0;
        while state.may_start(ep, slots) {
            state.in_flight += 1;
            *state
                .flying
                .entry(ep.owner.organization.clone())
                .or_insert(0) += 1;
            *state.flying_endpoints.entry(ep.id).or_insert(0) += 1;
            started += 1;
        }
        started
    }

    #[test]
    fn a_hanging_endpoint_leaves_slots_to_its_organisation_and_to_others() {
        let slots = Slots::new(32);
        assert_eq!((slots.organization, slots.endpoint), (8, 2));
        let mut state = FeedState::default();
        let (hanging, other) = (endpoint("a"), endpoint("a"));
        let (elsewhere, elsewhere_too) = (endpoint("b"), endpoint("b"));
        assert_eq!(fill(&mut state, &hanging, slots), 32 - 8 - 2);
        assert_eq!(
            fill(&mut state, &other, slots),
            2,
            "the endpoint share stays open"
        );
        // The organisation share stays open too, shared among organisation B's endpoints.
        assert_eq!(fill(&mut state, &elsewhere, slots), 8 - 2);
        assert_eq!(fill(&mut state, &elsewhere_too, slots), 2);
        assert_eq!(state.in_flight, 32);
    }

    #[test]
    fn small_pools_still_send() {
        for (concurrency, one_endpoint) in [(1, 1), (2, 1), (4, 2), (8, 5)] {
            let slots = Slots::new(concurrency);
            let mut state = FeedState::default();
            assert_eq!(
                fill(&mut state, &endpoint("a"), slots),
                one_endpoint,
                "{concurrency}"
            );
        }
    }
}
