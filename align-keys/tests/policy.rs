//! Least privilege: for any minter and any request the policy accepts, the new key's power is
//! never broader than the minter's, now or after the creator's role changes.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure should panic

use std::collections::BTreeSet;

use align_keys::Vocabulary;
use align_keys::policy::{Caller, KeySpec, Target, UserCaller, check_user_mint};
use align_keys::{
    Denial, Environment, KeyId, KeyRecord, OrganizationId, Permission, PermissionSet, ProjectId,
    Role, Scope, User, UserId,
};
use chrono::Utc;
use proptest::prelude::*;
use uuid::Uuid;

fn org() -> OrganizationId {
    OrganizationId(Uuid::from_u128(1))
}

fn project(i: u8) -> ProjectId {
    ProjectId(Uuid::from_u128(100 + u128::from(i)))
}

fn key(scope: Scope, permissions: Option<PermissionSet>, environment: Environment) -> KeyRecord {
    KeyRecord {
        id: KeyId::new(),
        name: "k".into(),
        prefix: "ako_00000000".into(),
        environment,
        organization_id: org(),
        scope,
        permissions,
        unrecognized_permissions: vec![],
        vocabulary: &Vocabulary::SERVER,
        owner_id: None,
        meta: None,
        created_by: UserId(Uuid::from_u128(7)),
        created_at: Utc::now(),
        last_used_at: None,
        expires_at: None,
        revoked_at: None,
        suspended_at: None,
        rotated_from: None,
        rate_limit_per_minute: None,
        allowed_cidrs: vec![],
    }
}

/// Everything a key can do: (permission, project or org-level, environment it may act in).
fn power(k: &KeyRecord, role: Role) -> BTreeSet<(Permission, Option<ProjectId>, Environment)> {
    let caller = Caller {
        key: k,
        creator_role: role,
    };
    let mut out = BTreeSet::new();
    let places = std::iter::once(None).chain((0..3).map(|i| Some(project(i))));
    for place in places {
        for env in [Environment::Live, Environment::Sandbox] {
            for p in k.vocabulary.iter() {
                let target = Target {
                    organization_id: org(),
                    project_id: place,
                    environment: Some(env),
                };
                if caller.authorize(p, target).is_ok() {
                    out.insert((p, place, env));
                }
            }
        }
    }
    out
}

fn role() -> impl Strategy<Value = Role> {
    prop_oneof![Just(Role::Admin), Just(Role::Engineer), Just(Role::Viewer)]
}

fn scope() -> impl Strategy<Value = Scope> {
    prop_oneof![
        Just(Scope::Organization),
        (0u8..3).prop_map(|i| Scope::Project(project(i)))
    ]
}

fn permissions() -> impl Strategy<Value = Option<PermissionSet>> {
    prop_oneof![
        Just(None),
        proptest::collection::vec(
            proptest::sample::select(Vocabulary::SERVER.iter().collect::<Vec<_>>()),
            0..6
        )
        .prop_map(|v| Some(v.into_iter().collect()))
    ]
}

/// A random vocabulary (random resources and actions, random admin-only, organisation-wide,
/// refused-not-narrowed and organisation-readable names, a random mint permission), leaked
/// for the records that refer to it.
fn vocabulary() -> impl Strategy<Value = &'static Vocabulary> {
    const RESOURCES: [&str; 5] = ["invoices", "customers", "refunds", "keys", "reports"];
    const ACTIONS: [&str; 4] = ["read", "write", "delete", "export"];
    (
        proptest::sample::subsequence(RESOURCES.to_vec(), 1..=5),
        proptest::collection::vec(proptest::sample::subsequence(ACTIONS.to_vec(), 1..=4), 5),
        proptest::collection::vec(0u8..16, 20),
        any::<usize>(),
    )
        .prop_map(|(resources, actions, flags, mint)| {
            let names: Vec<String> = resources
                .iter()
                .zip(actions)
                .flat_map(|(r, acts)| acts.into_iter().map(move |a| format!("{r}:{a}")))
                .collect();
            let pick = |bit: u8| -> Vec<&str> {
                names
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| flags[i % flags.len()] & bit != 0)
                    .map(|(_, n)| n.as_str())
                    .collect()
            };
            Vocabulary::from_names(names.clone())
                .unwrap()
                .with_admin_only(&pick(1))
                .with_organization_wide(&pick(2))
                .with_refused_not_narrowed(&pick(4))
                .with_organization_readable(&pick(8))
                .with_mint_permission(&names[mint % names.len()])
                .leak()
        })
}

fn environment() -> impl Strategy<Value = Environment> {
    prop_oneof![Just(Environment::Live), Just(Environment::Sandbox)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn a_minted_key_is_never_broader_than_its_minter(
        minter_role in role(),
        later_role in role(),
        minter_scope in scope(),
        minter_perms in permissions(),
        minter_env in environment(),
        new_scope in scope(),
        new_perms in permissions(),
        new_env in environment(),
    ) {
        let minter = key(minter_scope, minter_perms, minter_env);
        let caller = Caller { key: &minter, creator_role: minter_role };
        let spec = KeySpec { scope: new_scope, permissions: new_perms, environment: new_env };
        if caller.check_mint(&spec).is_ok() {
            let minted = key(new_scope, new_perms, new_env);
            // Both keys share a creator, so both follow the creator's role, whatever it becomes.
            for r in [minter_role, later_role] {
                let mine = power(&minter, r);
                let theirs = power(&minted, r);
                prop_assert!(theirs.is_subset(&mine), "escalation: {:?}", theirs.difference(&mine).collect::<Vec<_>>());
            }
            prop_assert!(minter_role != Role::Viewer);
            prop_assert!(!(minter_env == Environment::Sandbox && new_env == Environment::Live));
        }
    }

    #[test]
    fn a_minted_key_is_never_broader_than_its_minter_in_any_vocabulary(
        v in vocabulary(),
        minter_role in role(),
        later_role in role(),
        minter_scope in scope(),
        minter_bits in proptest::option::of(any::<u64>()),
        minter_env in environment(),
        new_scope in scope(),
        new_bits in proptest::option::of(any::<u64>()),
        new_env in environment(),
    ) {
        let set = |bits: Option<u64>| bits.map(|b| PermissionSet::from_bits(b).intersect(v.all()));
        let mut minter = key(minter_scope, set(minter_bits), minter_env);
        minter.vocabulary = v;
        let caller = Caller { key: &minter, creator_role: minter_role };
        let spec = KeySpec { scope: new_scope, permissions: set(new_bits), environment: new_env };
        if caller.check_mint(&spec).is_ok() {
            let mut minted = key(new_scope, set(new_bits), new_env);
            minted.vocabulary = v;
            for r in [minter_role, later_role] {
                let mine = power(&minter, r);
                let theirs = power(&minted, r);
                prop_assert!(theirs.is_subset(&mine), "escalation in {v:?}: {:?}", theirs.difference(&mine).collect::<Vec<_>>());
            }
            prop_assert!(minter_role != Role::Viewer);
            prop_assert!(!(minter_env == Environment::Sandbox && new_env == Environment::Live));
        }
        // A user of any role mints nothing beyond it either.
        let user = User {
            id: UserId::new(),
            organization_id: org(),
            email: "u@example.test".into(),
            name: None,
            role: minter_role,
            created_at: Utc::now(),
        };
        if check_user_mint(v, &user, &spec).is_ok() {
            let mut k = key(new_scope, set(new_bits), new_env);
            k.vocabulary = v;
            let eff = Caller { key: &k, creator_role: minter_role }.effective_permissions();
            let role = v.role_permissions(minter_role);
            prop_assert!(eff.is_subset_of(role));
            // Without a list, the key's scope (not only its creator's role) is within the role.
            let listed = k.permissions.unwrap_or(v.all()).intersect(v.scope_permissions(new_scope));
            prop_assert!(listed.is_subset_of(role), "{v:?}");
        }
    }

    #[test]
    fn a_user_mints_nothing_beyond_their_role(r in role(), s in scope(), p in permissions(), e in environment()) {
        let user = User {
            id: UserId::new(),
            organization_id: org(),
            email: "u@example.test".into(),
            name: None,
            role: r,
            created_at: Utc::now(),
        };
        let spec = KeySpec { scope: s, permissions: p, environment: e };
        if check_user_mint(&Vocabulary::SERVER, &user, &spec).is_ok() {
            prop_assert!(r != Role::Viewer);
            prop_assert!(!(s == Scope::Organization && r != Role::Admin));
            let k = key(s, p, e);
            let caller = Caller { key: &k, creator_role: r };
            let eff = caller.effective_permissions();
            prop_assert!(eff.is_subset_of(align_keys::policy::role_permissions(r)));
        }
    }
}

#[test]
fn viewers_mint_nothing_and_engineers_no_organization_keys() {
    let admin_key = key(Scope::Organization, None, Environment::Live);
    let org_spec = KeySpec {
        scope: Scope::Organization,
        permissions: None,
        environment: Environment::Live,
    };
    let viewer = Caller {
        key: &admin_key,
        creator_role: Role::Viewer,
    };
    assert_eq!(viewer.check_mint(&org_spec), Err(Denial::ViewerCannotMint));
    let engineer = Caller {
        key: &admin_key,
        creator_role: Role::Engineer,
    };
    assert_eq!(
        engineer.check_mint(&org_spec),
        Err(Denial::OrganizationScopeNeedsAdmin)
    );
    let project_spec = KeySpec {
        scope: Scope::Project(project(0)),
        ..org_spec
    };
    assert_eq!(engineer.check_mint(&project_spec), Ok(()));
}

#[test]
fn project_keys_cannot_mint_for_other_projects_or_the_organization() {
    let k = key(Scope::Project(project(0)), None, Environment::Live);
    let c = Caller {
        key: &k,
        creator_role: Role::Admin,
    };
    for scope in [Scope::Project(project(1)), Scope::Organization] {
        let spec = KeySpec {
            scope,
            permissions: None,
            environment: Environment::Live,
        };
        assert_eq!(c.check_mint(&spec), Err(Denial::ScopeBroader));
    }
}

#[test]
fn sandbox_keys_cannot_mint_live_keys_or_touch_live_data() {
    let k = key(Scope::Organization, None, Environment::Sandbox);
    let c = Caller {
        key: &k,
        creator_role: Role::Admin,
    };
    let spec = KeySpec {
        scope: Scope::Organization,
        permissions: None,
        environment: Environment::Live,
    };
    assert_eq!(c.check_mint(&spec), Err(Denial::EnvironmentBroader));
    let live = Target {
        organization_id: org(),
        project_id: None,
        environment: Some(Environment::Live),
    };
    assert_eq!(
        c.authorize(Permission::KeysRead, live),
        Err(Denial::WrongEnvironment)
    );
}

#[test]
fn narrowed_keys_cannot_mint_wider_permissions() {
    let narrow: PermissionSet = [Permission::KeysRead, Permission::KeysWrite]
        .into_iter()
        .collect();
    let k = key(Scope::Organization, Some(narrow), Environment::Live);
    let c = Caller {
        key: &k,
        creator_role: Role::Admin,
    };
    let wide = KeySpec {
        scope: Scope::Organization,
        permissions: None,
        environment: Environment::Live,
    };
    assert_eq!(c.check_mint(&wide), Err(Denial::PermissionsBroader));
    let same = KeySpec {
        permissions: Some(PermissionSet::only(Permission::KeysRead)),
        ..wide
    };
    assert_eq!(c.check_mint(&same), Ok(()));
}

#[test]
fn other_organizations_are_outside_scope_and_demotion_takes_effect_at_once() {
    let k = key(Scope::Organization, None, Environment::Live);
    let c = Caller {
        key: &k,
        creator_role: Role::Admin,
    };
    let elsewhere = Target {
        organization_id: OrganizationId::new(),
        project_id: None,
        environment: None,
    };
    assert_eq!(
        c.authorize(Permission::KeysRead, elsewhere),
        Err(Denial::OutsideScope)
    );
    let demoted = Caller {
        key: &k,
        creator_role: Role::Viewer,
    };
    let here = Target {
        organization_id: org(),
        project_id: None,
        environment: Some(Environment::Live),
    };
    assert_eq!(demoted.authorize(Permission::KeysRead, here), Ok(()));
    assert_eq!(
        demoted.authorize(Permission::KeysWrite, here),
        Err(Denial::MissingPermission(Permission::KeysWrite))
    );
}

/// Everything a signed-in user can do through a console.
fn user_power(user: &User) -> BTreeSet<(Permission, Option<ProjectId>, Environment)> {
    let caller = UserCaller {
        user,
        vocabulary: &Vocabulary::SERVER,
    };
    let mut out = BTreeSet::new();
    for place in std::iter::once(None).chain((0..3).map(|i| Some(project(i)))) {
        for env in [Environment::Live, Environment::Sandbox] {
            for p in Vocabulary::SERVER.iter() {
                let target = Target {
                    organization_id: org(),
                    project_id: place,
                    environment: Some(env),
                };
                if caller.authorize(p, target).is_ok() {
                    out.insert((p, place, env));
                }
            }
        }
    }
    out
}

fn user(role: Role) -> User {
    User {
        id: UserId(Uuid::from_u128(7)),
        organization_id: org(),
        name: None,
        email: "dev@acme.test".into(),
        role,
        created_at: Utc::now(),
    }
}

#[test]
fn a_console_user_holds_exactly_what_the_keys_they_could_mint_would_give() {
    for r in [Role::Admin, Role::Engineer] {
        let u = user(r);
        let mut union = BTreeSet::new();
        let scopes =
            std::iter::once(Scope::Organization).chain((0..3).map(|i| Scope::Project(project(i))));
        for s in scopes {
            for env in [Environment::Live, Environment::Sandbox] {
                let spec = KeySpec {
                    scope: s,
                    permissions: None,
                    environment: env,
                };
                if check_user_mint(&Vocabulary::SERVER, &u, &spec).is_ok() {
                    union.extend(power(&key(s, None, env), r));
                }
            }
        }
        assert_eq!(user_power(&u), union, "{r:?}");
    }
    // Viewers mint nothing; they read what an engineer reaches.
    let engineer = user_power(&user(Role::Engineer));
    let viewer = user_power(&user(Role::Viewer));
    let reads: BTreeSet<_> = engineer
        .iter()
        .filter(|(p, _, _)| p.as_str().ends_with(":read"))
        .copied()
        .collect();
    assert_eq!(viewer, reads);
}

#[test]
fn console_users_follow_the_same_minting_rules_and_stay_in_their_organisation() {
    let spec = |scope| KeySpec {
        scope,
        permissions: None,
        environment: Environment::Live,
    };
    let engineer = user(Role::Engineer);
    let e = UserCaller {
        user: &engineer,
        vocabulary: &Vocabulary::SERVER,
    };
    assert_eq!(
        e.check_mint(&spec(Scope::Organization)),
        Err(Denial::OrganizationScopeNeedsAdmin)
    );
    assert_eq!(e.check_mint(&spec(Scope::Project(project(0)))), Ok(()));
    let viewer = user(Role::Viewer);
    assert_eq!(
        UserCaller {
            user: &viewer,
            vocabulary: &Vocabulary::SERVER
        }
        .check_mint(&spec(Scope::Project(project(0)))),
        Err(Denial::ViewerCannotMint)
    );
    let elsewhere = Target {
        organization_id: OrganizationId(Uuid::from_u128(2)),
        project_id: Some(project(0)),
        environment: Some(Environment::Live),
    };
    let admin = user(Role::Admin);
    assert_eq!(
        UserCaller {
            user: &admin,
            vocabulary: &Vocabulary::SERVER
        }
        .authorize(Permission::KeysRead, elsewhere),
        Err(Denial::OutsideScope)
    );
    let org_key = Target {
        organization_id: org(),
        project_id: None,
        environment: Some(Environment::Live),
    };
    assert_eq!(
        e.authorize(Permission::KeysWrite, org_key),
        Err(Denial::OutsideScope)
    );
    assert_eq!(
        UserCaller {
            user: &admin,
            vocabulary: &Vocabulary::SERVER
        }
        .authorize(Permission::KeysWrite, org_key),
        Ok(())
    );
}

#[tokio::test]
async fn mint_as_user_sets_the_creator_and_refuses_what_the_role_forbids() {
    use align_keys::{KeyManager, MemoryKeyStore, NewKey, Sha256Hasher};
    let keys = KeyManager::new(
        std::sync::Arc::new(MemoryKeyStore::new()),
        std::sync::Arc::new(Sha256Hasher),
    );
    let engineer = user(Role::Engineer);
    let new = |scope| NewKey {
        name: "ci-read".into(),
        organization_id: OrganizationId(Uuid::from_u128(99)),
        scope,
        permissions: None,
        environment: Environment::Live,
        created_by: UserId(Uuid::from_u128(99)),
        expires_at: None,
        rate_limit_per_minute: None,
        allowed_cidrs: vec![],
        owner_id: None,
        meta: None,
    };
    let caller = align_keys::Producer::User(UserCaller {
        user: &engineer,
        vocabulary: &Vocabulary::SERVER,
    });
    let refused = keys
        .mint_as(&caller, new(Scope::Organization), Utc::now())
        .await;
    assert!(matches!(
        refused,
        Err(align_keys::Error::Forbidden(
            Denial::OrganizationScopeNeedsAdmin
        ))
    ));
    let minted = keys
        .mint_as(&caller, new(Scope::Project(project(1))), Utc::now())
        .await
        .unwrap();
    assert_eq!(minted.record.created_by, engineer.id);
    assert_eq!(minted.record.organization_id, org());
}
