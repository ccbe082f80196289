//! Who may mint what, and what a key may do (DESIGN §3).
//!
//! A key's power is its scope ∩ its permissions ∩ what its creator's *current* role allows,
//! and nothing can mint a key broader than itself in scope, permissions or environment.

use std::fmt;

use crate::domain::{
    KeyRecord, OrganizationId, Permission, PermissionSet, ProjectId, Role, Scope, User, Vocabulary,
};
use crate::token::Environment;

/// Why the policy refused. The server maps [`Denial::OutsideScope`] to `404` (never leak
/// existence) and the rest to `403 forbidden`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Denial {
    /// The key lacks this permission (by its list, its scope or its creator's role).
    MissingPermission(Permission),
    /// Viewers may not mint keys.
    ViewerCannotMint,
    /// Keys of this vocabulary mint no keys (it declares no mint permission).
    KeysCannotMint,
    /// Only admins may mint organisation-scoped keys.
    OrganizationScopeNeedsAdmin,
    /// The new key's scope would reach further than the minter's.
    ScopeBroader,
    /// The new key's permissions would exceed the minter's.
    PermissionsBroader,
    /// A sandbox key cannot create live objects.
    EnvironmentBroader,
    /// The object is outside the key's organisation or project.
    OutsideScope,
    /// A sandbox key touched live data.
    WrongEnvironment,
    /// The result would outlive its producer (a later expiry, or none).
    OutlivesProducer,
    /// The result's rate limit would exceed its producer's effective limit (or, for a user who
    /// is not an admin, the server default).
    RateHigher,
    /// The result would be usable from networks outside its producer's allowed networks.
    NetworksWider,
    /// A sandbox key changed an organisation-wide object (organisation settings, projects,
    /// users).
    SandboxOrganizationChange,
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingPermission(p) => write!(f, "the key does not have the `{p}` permission"),
            Self::ViewerCannotMint => f.write_str("viewers may not create API keys"),
            Self::KeysCannotMint => f.write_str("API keys may not create API keys here"),
            Self::OrganizationScopeNeedsAdmin => {
                f.write_str("only admins may create organization-scoped keys")
            }
            Self::ScopeBroader => f.write_str("a key cannot create a key with a broader scope"),
            Self::PermissionsBroader => {
                f.write_str("a key cannot create a key with permissions it does not have")
            }
            Self::EnvironmentBroader => f.write_str("a sandbox key cannot create live objects"),
            Self::OutsideScope => f.write_str("the object is outside the key's scope"),
            Self::WrongEnvironment => f.write_str("sandbox keys may only use sandbox data"),
            Self::OutlivesProducer => {
                f.write_str("a key cannot give a key an expiry later than its own")
            }
            Self::RateHigher => {
                f.write_str("a key's rate limit cannot exceed the rate limit of whoever sets it")
            }
            Self::NetworksWider => {
                f.write_str("a key cannot allow networks outside its own allowedCidrs")
            }
            Self::SandboxOrganizationChange => {
                f.write_str("sandbox keys cannot change organization-wide objects")
            }
        }
    }
}

/// What a role allows in the reference server's vocabulary ([`Vocabulary::role_permissions`]
/// for another).
pub const fn role_permissions(role: Role) -> PermissionSet {
    Vocabulary::SERVER.role_permissions(role)
}

/// What a scope allows in the reference server's vocabulary
/// ([`Vocabulary::scope_permissions`] for another): project keys cannot change the
/// organisation or create projects.
pub const fn scope_permissions(scope: Scope) -> PermissionSet {
    Vocabulary::SERVER.scope_permissions(scope)
}

/// Refuses a request for a refused-not-narrowed permission (the server's privacy ones)
/// outside `allowed`.
fn check_refused(
    vocabulary: &Vocabulary,
    spec: &KeySpec,
    allowed: PermissionSet,
) -> Result<(), Denial> {
    let asked = spec
        .permissions
        .unwrap_or(PermissionSet::EMPTY)
        .intersect(vocabulary.refused_not_narrowed());
    if asked.is_subset_of(allowed.intersect(vocabulary.scope_permissions(spec.scope))) {
        Ok(())
    } else {
        Err(Denial::PermissionsBroader)
    }
}

/// The shape of a key to be minted: what the policy judges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeySpec {
    /// Organisation-wide or one project.
    pub scope: Scope,
    /// `None` for every permission the scope allows.
    pub permissions: Option<PermissionSet>,
    /// Live or sandbox.
    pub environment: Environment,
}

/// An object a request wants to touch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    /// The organisation that owns it.
    pub organization_id: OrganizationId,
    /// The project it belongs to; `None` for organisation-level objects.
    pub project_id: Option<ProjectId>,
    /// Its environment, for objects that have one (keys, endpoints, events).
    pub environment: Option<Environment>,
}

/// The authority behind a request: an authenticated key and its creator's current role.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    /// The verified key.
    pub key: &'a KeyRecord,
    /// The role its creator holds now (not when the key was minted).
    pub creator_role: Role,
}

impl Caller<'_> {
    /// What the key may do: its permissions ∩ its scope's ∩ its creator's current role's,
    /// in the key's vocabulary.
    pub fn effective_permissions(&self) -> PermissionSet {
        let v = &self.key.vocabulary;
        self.key
            .permissions
            .unwrap_or(v.all())
            .intersect(v.scope_permissions(self.key.scope))
            .intersect(v.role_permissions(self.creator_role))
    }

    /// Checks that the key may use `permission` on `target`.
    ///
    /// Scope is checked first, so an object of another organisation or project is
    /// [`Denial::OutsideScope`] whatever the permissions.
    pub fn authorize(&self, permission: Permission, target: Target) -> Result<(), Denial> {
        if target.organization_id != self.key.organization_id {
            return Err(Denial::OutsideScope);
        }
        // A project key reaches its own project's objects; of the organisation-level ones it
        // may only read the organisation itself.
        let v = &self.key.vocabulary;
        let reachable = self.key.scope.covers(target.project_id)
            || (target.project_id.is_none() && v.organization_readable().contains(permission));
        if !reachable {
            return Err(Denial::OutsideScope);
        }
        if self.key.environment == Environment::Sandbox
            && target.environment == Some(Environment::Live)
        {
            return Err(Denial::WrongEnvironment);
        }
        // Organisation settings and projects have no environment: they are live data that a
        // sandbox key may read but never change.
        if self.key.environment == Environment::Sandbox
            && v.organization_wide().contains(permission)
        {
            return Err(Denial::SandboxOrganizationChange);
        }
        if !self.effective_permissions().contains(permission) {
            return Err(Denial::MissingPermission(permission));
        }
        Ok(())
    }

    /// Checks that this key may mint a key shaped like `spec` (least privilege).
    pub fn check_mint(&self, spec: &KeySpec) -> Result<(), Denial> {
        let v = &self.key.vocabulary;
        let Some(mint) = v.mint_permission() else {
            return Err(Denial::KeysCannotMint);
        };
        if !self.effective_permissions().contains(mint) {
            return Err(if self.creator_role == Role::Viewer {
                Denial::ViewerCannotMint
            } else {
                Denial::MissingPermission(mint)
            });
        }
        check_role_may_mint(self.creator_role, spec)?;
        if let Scope::Project(mine) = self.key.scope {
            if spec.scope != Scope::Project(mine) {
                return Err(Denial::ScopeBroader);
            }
        }
        // What the key may do now, its creator's current role included.
        let mine = self.effective_permissions();
        check_refused(v, spec, mine)?;
        let theirs = spec
            .permissions
            .unwrap_or(v.all())
            .intersect(v.scope_permissions(spec.scope));
        if !theirs.is_subset_of(mine) {
            return Err(Denial::PermissionsBroader);
        }
        if self.key.environment == Environment::Sandbox && spec.environment == Environment::Live {
            return Err(Denial::EnvironmentBroader);
        }
        Ok(())
    }
}

/// The authority of a signed-in user acting directly (a console), with their current role.
///
/// A user holds exactly what the broadest keys they could mint would give them, no more:
/// admins act as an organisation-scoped key of theirs would (the whole organisation);
/// engineers as a project-scoped key for whichever project the object belongs to (so
/// organisation-level objects, such as organisation-scoped keys, are out of their reach, and
/// of the organisation itself they may only read). Viewers, who mint nothing, may read what an
/// engineer reaches. A user has no environment: live and sandbox are both theirs.
#[derive(Debug, Clone, Copy)]
pub struct UserCaller<'a> {
    /// The user, as stored now (their current role).
    pub user: &'a User,
    /// The vocabulary of the keys the user mints and of the permissions asked for
    /// ([`Vocabulary::SERVER`] for the reference server's console).
    pub vocabulary: &'static Vocabulary,
}

impl UserCaller<'_> {
    /// What the user may do at most: their role's permissions, narrowed to a project key's
    /// unless they are an admin.
    pub fn effective_permissions(&self) -> PermissionSet {
        let v = &self.vocabulary;
        let role = v.role_permissions(self.user.role);
        if self.reaches_organization() {
            role
        } else {
            role.minus(v.organization_wide())
        }
    }

    /// Whether the user reaches organisation-level objects (admins only).
    pub fn reaches_organization(&self) -> bool {
        self.user.role == Role::Admin
    }

    /// Checks that the user may use `permission` on `target`; like [`Caller::authorize`],
    /// scope first, so another organisation's object is [`Denial::OutsideScope`].
    pub fn authorize(&self, permission: Permission, target: Target) -> Result<(), Denial> {
        if target.organization_id != self.user.organization_id {
            return Err(Denial::OutsideScope);
        }
        let reachable = self.reaches_organization()
            || target.project_id.is_some()
            || self.vocabulary.organization_readable().contains(permission);
        if !reachable {
            return Err(Denial::OutsideScope);
        }
        if !self.effective_permissions().contains(permission) {
            return Err(Denial::MissingPermission(permission));
        }
        Ok(())
    }

    /// Checks that the user may mint a key shaped like `spec` ([`check_user_mint`]).
    pub fn check_mint(&self, spec: &KeySpec) -> Result<(), Denial> {
        check_user_mint(self.vocabulary, self.user, spec)
    }
}

/// Checks that `user` may mint a key of `vocabulary` shaped like `spec` directly (console,
/// CLI, bootstrap).
pub fn check_user_mint(vocabulary: &Vocabulary, user: &User, spec: &KeySpec) -> Result<(), Denial> {
    let v = vocabulary;
    check_role_may_mint(user.role, spec)?;
    check_refused(v, spec, v.role_permissions(user.role))?;
    let allowed = v
        .role_permissions(user.role)
        .intersect(v.scope_permissions(spec.scope));
    // A key without a list holds everything its scope allows, so that must be within the
    // role too (as for a key minting one). In the server's vocabulary every scope an admin or
    // an engineer may mint lies inside their role, so this refuses nothing there; in an
    // embedder's it keeps an engineer from minting a list-less key whose scope reaches an
    // admin-only name.
    let requested = spec.permissions.unwrap_or(v.all());
    if !requested
        .intersect(v.scope_permissions(spec.scope))
        .is_subset_of(allowed)
    {
        return Err(Denial::PermissionsBroader);
    }
    Ok(())
}

fn check_role_may_mint(role: Role, spec: &KeySpec) -> Result<(), Denial> {
    match (role, spec.scope) {
        (Role::Viewer, _) => Err(Denial::ViewerCannotMint),
        (Role::Engineer, Scope::Organization) => Err(Denial::OrganizationScopeNeedsAdmin),
        _ => Ok(()),
    }
}
