//! Least privilege as a stateful property (DESIGN §3).
//!
//! Random sequences of mint, rotate, resume, suspend, PATCH, revoke, role changes and the
//! passing of time, by random principals (keys and users of one organisation), over the
//! memory store, driven the way the server drives `KeyManager`: a key acts only while it is
//! valid, and reaches only the keys its policy lets it touch. After every step:
//!
//! 1. every valid key holds no power (scope, permissions, environment, expiry, rate, allowed
//!    networks) that the principal that produced it, or last widened it, could not have minted
//!    at that moment, judged by an oracle written here independently of `align_keys::judge`;
//! 2. a key that was ever revoked or expired is never valid again.
//!
//! The sequences run over the reference server's vocabulary and over random vocabularies
//! (random resources and actions, random admin-only and organisation-wide names, a random mint
//! permission, grants asked for with `resource:*` wildcards); the oracle derives what each role
//! and scope allows from the vocabulary's declared lists itself.
//!
//! `ALIGN_LEAST_PRIVILEGE_CASES` sets the number of sequences (default 256; the long run in
//! `docs/security.md` uses 100,000, in release mode).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure should panic

use std::sync::Arc;
use std::time::Duration as StdDuration;

use align_keys::store::KeyStore;
use align_keys::*;
use chrono::{DateTime, Duration, TimeZone, Utc};
use proptest::prelude::*;

const DEFAULT_RATE: u32 = 600;
const USERS: [Role; 4] = [Role::Admin, Role::Admin, Role::Engineer, Role::Viewer];
const PROJECTS: usize = 2;

fn nets() -> [IpNet; 5] {
    [
        "10.0.0.0/8",
        "10.1.0.0/16",
        "10.1.2.0/24",
        "192.0.2.0/24",
        "0.0.0.0/0",
    ]
    .map(|n| n.parse().unwrap())
}

/// Who acts: one of the keys minted so far (by index, modulo their count) or a user.
#[derive(Debug, Clone, Copy)]
enum Who {
    Key(usize),
    User(usize),
}

#[derive(Debug, Clone)]
struct Shape {
    project: Option<usize>,
    /// Indexes into the vocabulary's requestable names (declared names and wildcards).
    permissions: Option<Vec<usize>>,
    sandbox: bool,
    expiry: Option<i64>,
    rate: Option<u32>,
    cidrs: Vec<usize>,
}

#[derive(Debug, Clone)]
enum Op {
    Mint(Who, Shape),
    Rotate(Who, usize, u64),
    Resume(Who, usize),
    Suspend(Who, usize),
    Revoke(Who, usize),
    Patch {
        who: Who,
        target: usize,
        expiry: Option<Option<i64>>,
        rate: Option<Option<u32>>,
        cidrs: Option<Vec<usize>>,
    },
    SetRole(usize, Role),
    Advance(i64),
}

fn who() -> impl Strategy<Value = Who> {
    prop_oneof![
        4 => any::<usize>().prop_map(Who::Key),
        1 => (0..USERS.len()).prop_map(Who::User),
    ]
}

fn expiry() -> impl Strategy<Value = i64> {
    prop_oneof![Just(30i64), Just(600), Just(3600), Just(86_400)]
}

fn rates() -> impl Strategy<Value = u32> {
    prop_oneof![Just(10u32), Just(600), Just(60_000)]
}

fn cidrs() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(0..5usize, 0..3)
}

fn shape() -> impl Strategy<Value = Shape> {
    (
        prop::option::of(0..PROJECTS),
        prop::option::weighted(0.6, prop::collection::vec(any::<usize>(), 0..6)),
        prop::bool::weighted(0.3),
        prop::option::weighted(0.3, expiry()),
        prop::option::weighted(0.3, rates()),
        prop::collection::vec(0..5usize, 0..2),
    )
        .prop_map(
            |(project, permissions, sandbox, expiry, rate, cidrs)| Shape {
                project,
                permissions,
                sandbox,
                expiry,
                rate,
                cidrs,
            },
        )
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (who(), shape()).prop_map(|(w, s)| Op::Mint(w, s)),
        3 => (who(), any::<usize>(), prop_oneof![Just(0u64), Just(60)])
            .prop_map(|(w, t, g)| Op::Rotate(w, t, g)),
        2 => (who(), any::<usize>()).prop_map(|(w, t)| Op::Resume(w, t)),
        2 => (who(), any::<usize>()).prop_map(|(w, t)| Op::Suspend(w, t)),
        1 => (who(), any::<usize>()).prop_map(|(w, t)| Op::Revoke(w, t)),
        4 => (
            who(),
            any::<usize>(),
            prop::option::of(prop::option::of(expiry())),
            prop::option::of(prop::option::of(rates())),
            prop::option::of(cidrs()),
        )
            .prop_map(|(who, target, expiry, rate, cidrs)| Op::Patch {
                who,
                target,
                expiry,
                rate,
                cidrs,
            }),
        1 => (0..USERS.len(), prop_oneof![Just(Role::Admin), Just(Role::Engineer), Just(Role::Viewer)])
            .prop_map(|(u, r)| Op::SetRole(u, r)),
        1 => prop_oneof![Just(45i64), Just(700), Just(4000)].prop_map(Op::Advance),
    ]
}

/// A vocabulary and, written out independently of `align_keys`, the rules it declares.
#[derive(Debug, Clone)]
struct Rules {
    vocabulary: &'static Vocabulary,
    names: Vec<String>,
    admin_only: Vec<String>,
    organization_wide: Vec<String>,
    mint: String,
}

impl Rules {
    fn server() -> Self {
        let strs = |l: &[&str]| l.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        Self {
            vocabulary: &Vocabulary::SERVER,
            names: Vocabulary::SERVER
                .declared()
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            admin_only: strs(&["organization:write", "privacy:read", "privacy:write"]),
            organization_wide: strs(&[
                "organization:write",
                "projects:write",
                "privacy:read",
                "privacy:write",
            ]),
            mint: "keys:write".into(),
        }
    }

    /// The set of the names `keep` accepts.
    fn set(&self, keep: impl Fn(&str) -> bool) -> PermissionSet {
        self.names
            .iter()
            .filter(|n| keep(n))
            .map(|n| self.vocabulary.get(n).unwrap())
            .collect()
    }

    fn role(&self, role: Role) -> PermissionSet {
        let admin_only = |n: &str| self.admin_only.iter().any(|a| a == n);
        match role {
            Role::Admin => self.set(|_| true),
            Role::Engineer => self.set(|n| !admin_only(n)),
            Role::Viewer => self.set(|n| n.ends_with(":read") && !admin_only(n)),
        }
    }

    fn scope(&self, scope: Scope) -> PermissionSet {
        match scope {
            Scope::Organization => self.set(|_| true),
            Scope::Project(_) => self.set(|n| !self.organization_wide.iter().any(|a| a == n)),
        }
    }

    fn mint(&self) -> Permission {
        self.vocabulary.get(&self.mint).unwrap()
    }

    /// What a request may name: every declared name and every resource's wildcard.
    fn requestable(&self) -> Vec<String> {
        let mut out = self.names.clone();
        for n in &self.names {
            let wildcard = format!("{}:*", n.split(':').next().unwrap());
            if !out.contains(&wildcard) {
                out.push(wildcard);
            }
        }
        out
    }
}

/// A random vocabulary: 1 to 5 resources with random actions, random rule lists, and one of
/// its names as the mint permission.
fn rules() -> impl Strategy<Value = Rules> {
    const RESOURCES: [&str; 6] = [
        "invoices",
        "customers",
        "refunds",
        "keys",
        "reports",
        "a_b-c",
    ];
    const ACTIONS: [&str; 5] = ["read", "write", "delete", "export", "admin"];
    (
        prop::sample::subsequence(RESOURCES.to_vec(), 1..=5),
        prop::collection::vec(prop::sample::subsequence(ACTIONS.to_vec(), 1..=5), 5),
        prop::collection::vec(0u8..4, 25),
        any::<usize>(),
    )
        .prop_map(|(resources, actions, flags, mint)| {
            let names: Vec<String> = resources
                .iter()
                .zip(actions)
                .flat_map(|(r, acts)| acts.into_iter().map(move |a| format!("{r}:{a}")))
                .collect();
            let flag = |i: usize, bit: u8| flags[i % flags.len()] & bit != 0;
            let pick = |bit| {
                names
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| flag(*i, bit))
                    .map(|(_, n)| n.clone())
                    .collect::<Vec<_>>()
            };
            let admin_only = pick(1);
            let organization_wide = pick(2);
            let mint = names[mint % names.len()].clone();
            let admin: Vec<&str> = admin_only.iter().map(String::as_str).collect();
            let wide: Vec<&str> = organization_wide.iter().map(String::as_str).collect();
            let vocabulary = Vocabulary::from_names(names.clone())
                .unwrap()
                .with_admin_only(&admin)
                .with_organization_wide(&wide)
                .with_mint_permission(&mint)
                .leak();
            Rules {
                vocabulary,
                names,
                admin_only,
                organization_wide,
                mint,
            }
        })
}

/// A principal as it was at the moment it produced or widened a key.
#[derive(Debug, Clone)]
enum Snapshot {
    Key { record: Box<KeyRecord>, role: Role },
    User { role: Role },
    Operator,
}

struct World {
    rules: Rules,
    store: Arc<MemoryKeyStore>,
    keys: KeyManager,
    org: OrganizationId,
    users: Vec<User>,
    projects: Vec<ProjectId>,
    /// Every key minted, in order, with what produced or last widened it.
    minted: Vec<(KeyId, Snapshot)>,
    /// Keys seen revoked or expired.
    dead: Vec<KeyId>,
    now: DateTime<Utc>,
}

impl World {
    async fn new(rules: Rules) -> Self {
        let store = Arc::new(MemoryKeyStore::new().with_vocabulary(rules.vocabulary));
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let org = Organization {
            id: OrganizationId::new(),
            name: "Acme".into(),
            security_contact: None,
            leak_policy: align_keys::LeakPolicy::default(),
            privacy_contact: None,
            created_at: now,
        };
        store.create_organization(&org).await.unwrap();
        let mut users = vec![];
        for (i, role) in USERS.iter().enumerate() {
            let u = User {
                id: UserId::new(),
                organization_id: org.id,
                email: format!("u{i}@acme.test"),
                name: None,
                role: *role,
                created_at: now,
            };
            store.create_user(&u).await.unwrap();
            users.push(u);
        }
        let mut projects = vec![];
        for i in 0..PROJECTS {
            let p = Project {
                id: ProjectId::new(),
                organization_id: org.id,
                name: format!("p{i}"),
                created_at: now,
            };
            store.create_project(&p).await.unwrap();
            projects.push(p.id);
        }
        let keys = KeyManager::new(store.clone() as Arc<dyn KeyStore>, Arc::new(Sha256Hasher))
            .with_default_rate_limit(DEFAULT_RATE);
        let mut w = Self {
            rules,
            store,
            keys,
            org: org.id,
            users,
            projects,
            minted: vec![],
            dead: vec![],
            now,
        };
        // The bootstrap key: the first admin's organisation key, minted by the operator.
        let boot = w
            .keys
            .mint(
                NewKey {
                    name: "bootstrap".into(),
                    organization_id: w.org,
                    scope: Scope::Organization,
                    permissions: None,
                    environment: Environment::Live,
                    created_by: w.users[0].id,
                    expires_at: None,
                    rate_limit_per_minute: None,
                    allowed_cidrs: vec![],
                    owner_id: None,
                    meta: None,
                },
                now,
            )
            .await
            .unwrap();
        w.minted.push((boot.record.id, Snapshot::Operator));
        w
    }

    async fn record(&self, id: KeyId) -> KeyRecord {
        self.store.get_key(id).await.unwrap().unwrap()
    }

    async fn role(&self, user: UserId) -> Role {
        self.store.get_user(user).await.unwrap().unwrap().role
    }

    /// The acting principal, if it may act at all now (a key must be valid), with its
    /// snapshot.
    async fn principal(&self, who: Who) -> Option<(Actor, Snapshot)> {
        match who {
            Who::User(i) => {
                let user = self
                    .store
                    .get_user(self.users[i].id)
                    .await
                    .unwrap()
                    .unwrap();
                let role = user.role;
                Some((
                    Actor::User(user, self.rules.clone()),
                    Snapshot::User { role },
                ))
            }
            Who::Key(i) => {
                let (id, _) = self.minted[i % self.minted.len()];
                let record = self.record(id).await;
                if record.status_at(self.now) != KeyStatus::Active {
                    return None;
                }
                let role = self.role(record.created_by).await;
                Some((
                    Actor::Key(Box::new(record.clone()), role, self.rules.clone()),
                    Snapshot::Key {
                        record: Box::new(record),
                        role,
                    },
                ))
            }
        }
    }

    fn target_id(&self, i: usize) -> KeyId {
        self.minted[i % self.minted.len()].0
    }

    fn set_snapshot(&mut self, id: KeyId, snap: Snapshot) {
        if let Some(entry) = self.minted.iter_mut().find(|(k, _)| *k == id) {
            entry.1 = snap;
        }
    }

    async fn step(&mut self, op: &Op) {
        match op {
            Op::Advance(secs) => self.now += Duration::seconds(*secs),
            Op::SetRole(u, role) => {
                self.store
                    .set_user_role(self.users[*u].id, *role)
                    .await
                    .unwrap();
            }
            Op::Mint(who, shape) => {
                let Some((actor, snap)) = self.principal(*who).await else {
                    return;
                };
                let new = NewKey {
                    name: "k".into(),
                    organization_id: self.org,
                    scope: shape
                        .project
                        .map_or(Scope::Organization, |p| Scope::Project(self.projects[p])),
                    permissions: shape.permissions.as_ref().map(|p| self.perm_set(p)),
                    environment: if shape.sandbox {
                        Environment::Sandbox
                    } else {
                        Environment::Live
                    },
                    created_by: self.users[0].id,
                    expires_at: shape.expiry.map(|s| self.now + Duration::seconds(s)),
                    rate_limit_per_minute: shape.rate,
                    allowed_cidrs: shape.cidrs.iter().map(|i| nets()[*i]).collect(),
                    owner_id: None,
                    meta: None,
                };
                if let Ok(m) = self.keys.mint_as(&actor.producer(), new, self.now).await {
                    self.minted.push((m.record.id, snap));
                }
            }
            Op::Rotate(who, t, grace) => {
                let Some((actor, snap)) = self.principal(*who).await else {
                    return;
                };
                let target = self.record(self.target_id(*t)).await;
                if !actor.reaches(&target) {
                    return;
                }
                let grace = StdDuration::from_secs(*grace);
                if let Ok(r) = self
                    .keys
                    .rotate_as(&actor.producer(), target.id, grace, self.now)
                    .await
                {
                    self.minted.push((r.successor.record.id, snap));
                }
            }
            Op::Resume(who, t) => {
                let Some((actor, snap)) = self.principal(*who).await else {
                    return;
                };
                let target = self.record(self.target_id(*t)).await;
                if !actor.reaches(&target) {
                    return;
                }
                let was_suspended = target.suspended_at.is_some();
                if self
                    .keys
                    .resume_as(&actor.producer(), target.id, self.now)
                    .await
                    .is_ok()
                    && was_suspended
                {
                    self.set_snapshot(target.id, snap);
                }
            }
            Op::Suspend(who, t) | Op::Revoke(who, t) => {
                let Some((actor, _)) = self.principal(*who).await else {
                    return;
                };
                let target = self.record(self.target_id(*t)).await;
                if !actor.reaches(&target) {
                    return;
                }
                if matches!(op, Op::Revoke(..)) {
                    self.keys.revoke(target.id, self.now).await.unwrap();
                } else {
                    self.keys.suspend(target.id, self.now).await.unwrap();
                }
            }
            Op::Patch {
                who,
                target,
                expiry,
                rate,
                cidrs,
            } => {
                let Some((actor, snap)) = self.principal(*who).await else {
                    return;
                };
                let before = self.record(self.target_id(*target)).await;
                if !actor.reaches(&before) {
                    return;
                }
                let changes = KeyChanges {
                    name: None,
                    expires_at: expiry.map(|e| e.map(|s| self.now + Duration::seconds(s))),
                    rate_limit_per_minute: *rate,
                    allowed_cidrs: cidrs
                        .as_ref()
                        .map(|c| c.iter().map(|i| nets()[*i]).collect()),
                    owner_id: None,
                    meta: None,
                };
                if let Ok(after) = self
                    .keys
                    .update_as(&actor.producer(), before.id, changes, self.now)
                    .await
                {
                    if widened(&before, &after) {
                        self.set_snapshot(after.id, snap);
                    }
                }
            }
        }
    }

    /// The set a request naming these requestable names (wildcards included) asks for,
    /// checked against the expansion written here.
    fn perm_set(&self, picks: &[usize]) -> PermissionSet {
        let requestable = self.rules.requestable();
        let asked: Vec<&str> = picks
            .iter()
            .map(|i| requestable[i % requestable.len()].as_str())
            .collect();
        let set = self.rules.vocabulary.parse(&asked).unwrap();
        let expected = self.rules.set(|n| {
            asked
                .iter()
                .any(|a| *a == n || a.strip_suffix(":*") == n.split(':').next())
        });
        assert_eq!(set, expected, "{asked:?}");
        set
    }

    /// Both invariants, after a step.
    async fn check(&mut self) -> Result<(), String> {
        for (id, snap) in &self.minted {
            let k = self.record(*id).await;
            match k.status_at(self.now) {
                KeyStatus::Revoked | KeyStatus::Expired => {
                    if !self.dead.contains(id) {
                        self.dead.push(*id);
                    }
                    continue;
                }
                KeyStatus::Suspended => continue,
                KeyStatus::Active => {}
            }
            if self.dead.contains(id) {
                return Err(format!(
                    "key {id} was revoked or expired and is valid again"
                ));
            }
            if let Err(why) = could_mint(&self.rules, snap, &k) {
                return Err(format!("key {k:?} exceeds its producer {snap:?}: {why}"));
            }
        }
        Ok(())
    }
}

/// The acting principal as the server hands it to the manager.
enum Actor {
    Key(Box<KeyRecord>, Role, Rules),
    User(User, Rules),
}

impl Actor {
    fn producer(&self) -> Producer<'_> {
        match self {
            Self::Key(record, role, _) => Producer::Key(Caller {
                key: record,
                creator_role: *role,
            }),
            Self::User(user, rules) => Producer::User(UserCaller {
                user,
                vocabulary: rules.vocabulary,
            }),
        }
    }

    /// Whether the route would let it change `key` at all (`keys:write` on the key).
    fn reaches(&self, key: &KeyRecord) -> bool {
        let target = Target {
            organization_id: key.organization_id,
            project_id: key.scope.project_id(),
            environment: Some(key.environment),
        };
        match self {
            Self::Key(record, role, rules) => Caller {
                key: record,
                creator_role: *role,
            }
            .authorize(rules.mint(), target)
            .is_ok(),
            Self::User(user, rules) => UserCaller {
                user,
                vocabulary: rules.vocabulary,
            }
            .authorize(rules.mint(), target)
            .is_ok(),
        }
    }
}

fn powers(rules: &Rules, k: &KeyRecord) -> PermissionSet {
    k.permissions
        .unwrap_or(rules.set(|_| true))
        .intersect(rules.scope(k.scope))
}

fn rate(k: &KeyRecord) -> u32 {
    k.rate_limit_per_minute.unwrap_or(DEFAULT_RATE)
}

fn inside(inner: &[IpNet], outer: &[IpNet]) -> bool {
    outer.is_empty()
        || (!inner.is_empty() && inner.iter().all(|n| outer.iter().any(|o| o.contains(n))))
}

fn widened(before: &KeyRecord, after: &KeyRecord) -> bool {
    let later = match (after.expires_at, before.expires_at) {
        (_, None) => false,
        (None, Some(_)) => true,
        (Some(a), Some(b)) => a > b,
    };
    later || rate(after) > rate(before) || !inside(&after.allowed_cidrs, &before.allowed_cidrs)
}

/// The oracle: could the principal, as it was, have minted a key with `k`'s powers?
fn could_mint(rules: &Rules, producer: &Snapshot, k: &KeyRecord) -> Result<(), &'static str> {
    let powers = |k: &KeyRecord| powers(rules, k);
    match producer {
        Snapshot::Operator => Ok(()),
        Snapshot::User { role } => {
            match (role, k.scope) {
                (Role::Viewer, _) => return Err("a viewer produced a key"),
                (Role::Engineer, Scope::Organization) => {
                    return Err("an engineer produced an organisation key");
                }
                _ => {}
            }
            if !powers(k).is_subset_of(rules.role(*role)) {
                return Err("permissions beyond the user's role");
            }
            if *role != Role::Admin && rate(k) > DEFAULT_RATE {
                return Err("a rate above the default from a user who is not an admin");
            }
            Ok(())
        }
        Snapshot::Key { record: p, role } => {
            let mine = powers(p).intersect(rules.role(*role));
            if !mine.contains(rules.mint()) {
                return Err("a key without the mint permission produced a key");
            }
            match (p.scope, k.scope) {
                (Scope::Project(a), Scope::Project(b)) if a != b => {
                    return Err("another project");
                }
                (Scope::Project(_), Scope::Organization) => return Err("a broader scope"),
                (_, Scope::Organization) if *role != Role::Admin => {
                    return Err("an organisation key from a non-admin's key");
                }
                _ => {}
            }
            if !powers(k).is_subset_of(mine) {
                return Err("permissions beyond the producer's");
            }
            if p.environment == Environment::Sandbox && k.environment == Environment::Live {
                return Err("a live key from a sandbox key");
            }
            if let Some(end) = p.expires_at {
                if k.expires_at.is_none_or(|e| e > end) {
                    return Err("outlives the producer");
                }
            }
            if rate(k) > rate(p) {
                return Err("a higher rate than the producer's");
            }
            if !inside(&k.allowed_cidrs, &p.allowed_cidrs) {
                return Err("networks outside the producer's");
            }
            Ok(())
        }
    }
}

fn cases() -> u32 {
    std::env::var("ALIGN_LEAST_PRIVILEGE_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn no_sequence_of_operations_yields_a_key_broader_than_its_producer_could_mint(
        ops in prop::collection::vec(op(), 1..40)
    ) {
        let outcome = run(Rules::server(), &ops);
        prop_assert!(outcome.is_ok(), "{}", outcome.unwrap_err());
    }

    #[test]
    fn no_sequence_of_operations_yields_a_key_broader_than_its_producer_could_mint_in_any_vocabulary(
        rules in rules(),
        ops in prop::collection::vec(op(), 1..40)
    ) {
        let outcome = run(rules.clone(), &ops);
        prop_assert!(outcome.is_ok(), "{rules:?}: {}", outcome.unwrap_err());
    }
}

fn run(rules: Rules, ops: &[Op]) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut world = World::new(rules).await;
        for (i, op) in ops.iter().enumerate() {
            world.step(op).await;
            world
                .check()
                .await
                .map_err(|e| format!("after step {i} ({op:?}): {e}"))?;
        }
        Ok(())
    })
}
