//! The one judge of every operation that yields or widens a credential (DESIGN §3).
//!
//! Minting, rotating (the successor), resuming, and any change that widens a key's expiry,
//! rate limit or allowed networks are all judged the same way: *could this producer mint
//! this result, inside its own bounds?* [`KeyManager`](crate::KeyManager) calls [`judge`]
//! before each of them, so no route, console page or CLI command has a side door.

use chrono::{DateTime, Utc};

use crate::domain::{IpNet, KeyRecord, PermissionSet, Role, Scope};
use crate::policy::{Caller, Denial, KeySpec, UserCaller};
use crate::token::Environment;

/// Every power of a credential that the judge bounds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Organisation-wide or one project.
    pub scope: Scope,
    /// `None` for every permission the scope allows.
    pub permissions: Option<PermissionSet>,
    /// Live or sandbox.
    pub environment: Environment,
    /// When it stops working; `None` for never.
    pub expires_at: Option<DateTime<Utc>>,
    /// Its own rate limit; `None` for the server default.
    pub rate_limit_per_minute: Option<u32>,
    /// The networks it may be used from; empty for any.
    pub allowed_cidrs: Vec<IpNet>,
}

impl Grant {
    /// The powers `record` holds.
    pub fn of(record: &KeyRecord) -> Self {
        Self {
            scope: record.scope,
            permissions: record.permissions,
            environment: record.environment,
            expires_at: record.expires_at,
            rate_limit_per_minute: record.rate_limit_per_minute,
            allowed_cidrs: record.allowed_cidrs.clone(),
        }
    }

    /// The scope, permissions and environment, as [`Caller::check_mint`] judges them.
    pub fn spec(&self) -> KeySpec {
        KeySpec {
            scope: self.scope,
            permissions: self.permissions,
            environment: self.environment,
        }
    }

    /// Whether `self` reaches further than `before` in expiry, rate or networks (scope,
    /// permissions and environment never change after minting).
    pub fn widens(&self, before: &Self, default_rate: u32) -> bool {
        let later = match (self.expires_at, before.expires_at) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(now), Some(was)) => now > was,
        };
        let faster = self.rate_limit_per_minute.unwrap_or(default_rate)
            > before.rate_limit_per_minute.unwrap_or(default_rate);
        later || faster || !networks_within(&self.allowed_cidrs, &before.allowed_cidrs)
    }
}

/// Who produces a credential.
#[derive(Debug, Clone, Copy)]
pub enum Producer<'a> {
    /// An API key, with its creator's current role.
    Key(Caller<'a>),
    /// A signed-in user (a console), with their current role.
    User(UserCaller<'a>),
    /// The operator of the deployment (bootstrap, the operator CLI on the data directory):
    /// trusted, judged by nothing but input validation.
    Operator,
}

impl Producer<'_> {
    /// The user on whose authority what it produces exists; `None` for the operator, who
    /// names a user explicitly.
    pub fn user_id(&self) -> Option<crate::UserId> {
        match self {
            Self::Key(c) => Some(c.key.created_by),
            Self::User(u) => Some(u.user.id),
            Self::Operator => None,
        }
    }

    /// The producer's own bounds, which what it mints inherits where the request leaves a
    /// power unset: its expiry, its effective rate limit when below the default, its allowed
    /// networks. Users and the operator have none.
    pub fn fill_unset(&self, grant: &mut Grant, set: Unset) {
        let Self::Key(caller) = self else {
            return;
        };
        let mine = caller.key;
        if set.expires_at && grant.expires_at.is_none() {
            grant.expires_at = mine.expires_at;
        }
        if set.rate_limit_per_minute && grant.rate_limit_per_minute.is_none() {
            grant.rate_limit_per_minute = mine.rate_limit_per_minute;
        }
        if set.allowed_cidrs && grant.allowed_cidrs.is_empty() {
            grant.allowed_cidrs.clone_from(&mine.allowed_cidrs);
        }
    }
}

/// Which powers a request left unset, so that [`Producer::fill_unset`] may give them the
/// producer's own bounds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Unset {
    /// No expiry was asked for.
    pub expires_at: bool,
    /// No rate limit was asked for.
    pub rate_limit_per_minute: bool,
    /// No allowed networks were asked for.
    pub allowed_cidrs: bool,
}

impl Unset {
    /// Every bound unset.
    pub const ALL: Self = Self {
        expires_at: true,
        rate_limit_per_minute: true,
        allowed_cidrs: true,
    };
}

/// Could `producer` mint `result`, inside its own bounds? `default_rate` is the rate limit of
/// a key without its own.
///
/// - a key: [`Caller::check_mint`] (role, scope, permissions, environment), and the result
///   expires no later than the key, is no faster than the key's effective limit, and is
///   confined to networks inside the key's allowed networks;
/// - a user: [`UserCaller::check_mint`], and only an admin may go above the default rate;
/// - the operator: anything.
///
/// ```
/// use align_keys::judge::{judge, Grant, Producer};
/// use align_keys::*;
/// let org = OrganizationId::new();
/// let narrow = KeyRecord {
///     id: KeyId::new(), name: "ci".into(), prefix: "ako_00000000".into(),
///     environment: Environment::Live, organization_id: org, scope: Scope::Organization,
///     permissions: Some(PermissionSet::only(Permission::KeysWrite)),
///     unrecognized_permissions: vec![], vocabulary: &Vocabulary::SERVER,
///     owner_id: None, meta: None, created_by: UserId::new(), created_at: chrono::Utc::now(), last_used_at: None,
///     expires_at: None, revoked_at: None, suspended_at: None, rotated_from: None,
///     rate_limit_per_minute: None, allowed_cidrs: vec![],
/// };
/// let caller = Producer::Key(Caller { key: &narrow, creator_role: Role::Admin });
/// let mut broad = Grant::of(&narrow);
/// broad.permissions = None; // every permission: broader than the caller
/// assert_eq!(judge(&caller, &broad, 600), Err(Denial::PermissionsBroader));
/// broad.permissions = narrow.permissions;
/// broad.rate_limit_per_minute = Some(60_000); // faster than the caller's 600
/// assert_eq!(judge(&caller, &broad, 600), Err(Denial::RateHigher));
/// ```
pub fn judge(producer: &Producer<'_>, result: &Grant, default_rate: u32) -> Result<(), Denial> {
    match producer {
        Producer::Operator => Ok(()),
        Producer::User(user) => {
            user.check_mint(&result.spec())?;
            let rate = result.rate_limit_per_minute.unwrap_or(default_rate);
            if user.user.role != Role::Admin && rate > default_rate {
                return Err(Denial::RateHigher);
            }
            Ok(())
        }
        Producer::Key(caller) => {
            caller.check_mint(&result.spec())?;
            let mine = caller.key;
            if let Some(my_end) = mine.expires_at {
                if result.expires_at.is_none_or(|end| end > my_end) {
                    return Err(Denial::OutlivesProducer);
                }
            }
            let my_rate = mine.rate_limit_per_minute.unwrap_or(default_rate);
            if result.rate_limit_per_minute.unwrap_or(default_rate) > my_rate {
                return Err(Denial::RateHigher);
            }
            if !networks_within(&result.allowed_cidrs, &mine.allowed_cidrs) {
                return Err(Denial::NetworksWider);
            }
            Ok(())
        }
    }
}

/// Whether every network of `inner` lies inside one of `outer` (an empty list is every
/// network).
fn networks_within(inner: &[IpNet], outer: &[IpNet]) -> bool {
    if outer.is_empty() {
        return true;
    }
    !inner.is_empty() && inner.iter().all(|n| outer.iter().any(|o| o.contains(n)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap_or_else(|_| unreachable!())
    }

    #[test]
    fn an_empty_allow_list_is_every_network() {
        assert!(networks_within(&[], &[]));
        assert!(networks_within(&[net("10.0.0.0/8")], &[]));
        assert!(!networks_within(&[], &[net("10.0.0.0/8")]));
        assert!(networks_within(&[net("10.1.0.0/16")], &[net("10.0.0.0/8")]));
        assert!(!networks_within(
            &[net("10.1.0.0/16"), net("192.0.2.0/24")],
            &[net("10.0.0.0/8")]
        ));
    }
}
