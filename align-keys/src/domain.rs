//! Organisations, projects, users, roles, scopes, permissions and key records.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::token::Environment;
pub use crate::vocabulary::{Permission, PermissionSet, Vocabulary};
pub use ipnet::IpNet;

/// A network of a key's allow-list, from CIDR text (`203.0.113.0/24`, `2001:db8::/32`); a bare
/// address means just that address, and host bits are cleared. `None` when `text` is neither
/// (the API and the CLI read `allowedCidrs` and `--allowed-cidrs` with it).
pub fn parse_network(text: &str) -> Option<IpNet> {
    let t = text.trim();
    t.parse::<IpNet>()
        .or_else(|_| t.parse::<std::net::IpAddr>().map(IpNet::from))
        .map(|n| n.trunc())
        .ok()
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A fresh random (v4) id.
            pub fn new() -> Self {
                Self(Uuid::new_v4())
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }
    };
}

id_type!(
    /// Identifies an organisation.
    OrganizationId
);
id_type!(
    /// Identifies a project inside an organisation.
    ProjectId
);
id_type!(
    /// Identifies a user (a person) of an organisation.
    UserId
);
id_type!(
    /// Identifies an API key record (not the token).
    KeyId
);

impl UserId {
    /// No user: the creator of keys that an embedding service mints on its own authority
    /// (the nil UUID). No user ever has this id, so an embedder that asks for a creator's role
    /// finds none and decides itself (the reference server never mints such keys: each of its
    /// keys has a creating user whose current role bounds it).
    pub const SERVICE: Self = Self(Uuid::nil());
}

/// An organisation: the owner of projects, users and keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Organization {
    /// Its id.
    pub id: OrganizationId,
    /// Display name.
    pub name: String,
    /// Where security notices go (an e-mail address), if set; published in
    /// `/.well-known/security.txt`.
    pub security_contact: Option<String>,
    /// What happens to its keys when they are reported as leaked.
    #[serde(default)]
    pub leak_policy: crate::leak::LeakPolicy,
    /// Where people send privacy requests (access, correction, erasure), if set.
    #[serde(default)]
    pub privacy_contact: Option<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

impl Organization {
    /// A new organisation named `name`, created at `now`: no contacts yet, and the default
    /// answer to leaked keys.
    pub fn new(name: impl Into<String>, now: DateTime<Utc>) -> Self {
        Self {
            id: OrganizationId::new(),
            name: name.into(),
            security_contact: None,
            leak_policy: crate::leak::LeakPolicy::default(),
            privacy_contact: None,
            created_at: now,
        }
    }
}

/// A project: the narrowest scope a key can have.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Project {
    /// Its id.
    pub id: ProjectId,
    /// The organisation that owns it.
    pub organization_id: OrganizationId,
    /// Display name.
    pub name: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// A person's role in their organisation; it bounds every key they create, now and later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything, including organisation-scoped keys.
    Admin,
    /// Project work, including project-scoped keys; not organisation settings.
    Engineer,
    /// Read-only; may mint nothing.
    Viewer,
}

impl Role {
    /// Every role, most powerful first.
    pub const ALL: [Self; 3] = [Self::Admin, Self::Engineer, Self::Viewer];

    /// `admin`, `engineer` or `viewer`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Engineer => "engineer",
            Self::Viewer => "viewer",
        }
    }

    /// Parses `admin`, `engineer` or `viewer`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == name)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A user of an organisation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    /// Its id.
    pub id: UserId,
    /// The organisation the user belongs to.
    pub organization_id: OrganizationId,
    /// Login e-mail or name, unique per organisation.
    pub email: String,
    /// The person's display name, if they gave one (personal data: erased with the user).
    #[serde(default)]
    pub name: Option<String>,
    /// Current role: changes apply to the user's existing keys at once.
    pub role: Role,
    /// When the user was created.
    pub created_at: DateTime<Utc>,
}

impl User {
    /// A new user of `organization` signing in as `email` with `role`, created at `now`; no
    /// display name yet.
    pub fn new(
        organization: OrganizationId,
        email: impl Into<String>,
        role: Role,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            id: UserId::new(),
            organization_id: organization,
            email: email.into(),
            name: None,
            role,
            created_at: now,
        }
    }
}

/// What a key can reach: the whole organisation or one project.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Every project of the key's organisation, and the organisation itself.
    Organization,
    /// One project only.
    Project(ProjectId),
}

impl Scope {
    /// `organization` or `project`, as in the HTTP API's `scope` field.
    pub const fn kind(&self) -> &'static str {
        match self {
            Self::Organization => "organization",
            Self::Project(_) => "project",
        }
    }

    /// The project for a project scope.
    pub const fn project_id(&self) -> Option<ProjectId> {
        match self {
            Self::Organization => None,
            Self::Project(p) => Some(*p),
        }
    }

    /// Whether this scope reaches `project` (`None`: organisation-level objects).
    pub fn covers(&self, project: Option<ProjectId>) -> bool {
        match (self, project) {
            (Self::Organization, _) => true,
            (Self::Project(mine), Some(p)) => *mine == p,
            (Self::Project(_), None) => false,
        }
    }
}

/// What happened to a key, for stores that record events with the change (see
/// [`KeyManagement::insert_key_with_event`](crate::KeyManagement::insert_key_with_event)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyEventKind {
    /// A key was minted.
    Created,
    /// A key was minted as the successor of another (rotation).
    Rotated,
    /// A key was revoked.
    Revoked,
    /// A key was suspended.
    Suspended,
    /// A suspension was lifted.
    Resumed,
    /// Name, expiry, rate-limit override or allowed networks changed.
    Updated,
}

impl KeyEventKind {
    /// The event type name (`api_key.created`, …).
    pub const fn event_type(self) -> &'static str {
        match self {
            Self::Created => "api_key.created",
            Self::Rotated => "api_key.rotated",
            Self::Revoked => "api_key.revoked",
            Self::Suspended => "api_key.suspended",
            Self::Resumed => "api_key.resumed",
            Self::Updated => "api_key.updated",
        }
    }
}

/// A change to a key and when it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyEvent {
    /// What happened.
    pub kind: KeyEventKind,
    /// When.
    pub at: DateTime<Utc>,
    /// What the caller of the change handed to the store's event hook with it
    /// ([`KeyManager::with_attachment`](crate::KeyManager::with_attachment)); `None` unless
    /// one was given.
    pub attachment: Option<Attachment>,
}

impl KeyEvent {
    /// An event of `kind` at `at`, without an attachment.
    pub fn new(kind: KeyEventKind, at: DateTime<Utc>) -> Self {
        Self {
            kind,
            at,
            attachment: None,
        }
    }
}

/// A value the caller of a key change hands through the store to its event hook, opaque to
/// this crate: an embedder's hook reads back its own type with
/// [`downcast_ref`](Self::downcast_ref). The Align server attaches the change's audit record
/// this way, so that the hook stages it in the change's transaction without `align-keys`
/// knowing about audit logs.
///
/// Cheap to clone (one shared allocation). Two attachments are equal when they are the same
/// value; `Debug` shows no content, so an attachment never leaks into a log.
///
/// ```
/// use align_keys::Attachment;
/// let a = Attachment::new(String::from("note"));
/// assert_eq!(a.downcast_ref::<String>().map(String::as_str), Some("note"));
/// assert!(a.downcast_ref::<u32>().is_none());
/// assert_eq!(a.clone(), a);
/// ```
#[derive(Clone)]
pub struct Attachment(std::sync::Arc<dyn std::any::Any + Send + Sync>);

impl Attachment {
    /// Wraps `value`.
    pub fn new<T: std::any::Any + Send + Sync>(value: T) -> Self {
        Self(std::sync::Arc::new(value))
    }

    /// Shares an existing value.
    pub fn from_arc<T: std::any::Any + Send + Sync>(value: std::sync::Arc<T>) -> Self {
        Self(value)
    }

    /// The attached value if it is a `T`.
    pub fn downcast_ref<T: std::any::Any>(&self) -> Option<&T> {
        self.0.downcast_ref::<T>()
    }
}

impl fmt::Debug for Attachment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Attachment(..)")
    }
}

impl PartialEq for Attachment {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Attachment {}

/// Everything stored about an API key except its hash. Never holds the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    /// Its id.
    pub id: KeyId,
    /// Human name, e.g. `prod-sync`.
    pub name: String,
    /// Public 12-character prefix, e.g. `ako_9311c954`.
    pub prefix: String,
    /// Live or sandbox.
    pub environment: Environment,
    /// Owning organisation.
    pub organization_id: OrganizationId,
    /// Organisation-wide or one project.
    pub scope: Scope,
    /// `None`: every permission the scope and role allow; otherwise only these.
    pub permissions: Option<PermissionSet>,
    /// Stored permission names the vocabulary does not declare: they grant nothing, and are
    /// written back unchanged when the key is saved (see [`Vocabulary`]). Empty for keys
    /// minted here.
    pub unrecognized_permissions: Vec<String>,
    /// The vocabulary `permissions` is relative to (the store's).
    pub vocabulary: &'static Vocabulary,
    /// The embedder's own id for the key's owner (a customer, a user), at most 256 characters.
    pub owner_id: Option<String>,
    /// The embedder's own data about the key: a JSON object of at most 4 KiB serialized.
    pub meta: Option<Meta>,
    /// The user on whose authority the key exists; their current role bounds it.
    pub created_by: UserId,
    /// When it was minted.
    pub created_at: DateTime<Utc>,
    /// Time of its latest authenticated request.
    pub last_used_at: Option<DateTime<Utc>>,
    /// After this instant the key is expired.
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was revoked; revoked keys never work again.
    pub revoked_at: Option<DateTime<Utc>>,
    /// When it was suspended; cleared on resume.
    pub suspended_at: Option<DateTime<Utc>>,
    /// The key this one replaced by rotation.
    pub rotated_from: Option<KeyId>,
    /// Requests per minute for this key instead of the server default.
    pub rate_limit_per_minute: Option<u32>,
    /// If not empty, only requests from these networks may use the key.
    pub allowed_cidrs: Vec<IpNet>,
}

/// A key's `meta`: a JSON object (at most [`MAX_META_BYTES`] serialized).
pub type Meta = serde_json::Map<String, serde_json::Value>;

/// Longest `ownerId`, in characters.
pub const MAX_OWNER_ID_LEN: usize = 256;
/// Largest `meta`, in bytes of its JSON serialization.
pub const MAX_META_BYTES: usize = 4096;

/// The state of a key at an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStatus {
    /// Usable.
    Active,
    /// Suspended until resumed.
    Suspended,
    /// Past its expiry.
    Expired,
    /// Revoked for good.
    Revoked,
}

impl KeyRecord {
    /// Whether a request from `ip` may use the key (always, when no allow-list is set).
    pub fn allows_ip(&self, ip: std::net::IpAddr) -> bool {
        let ip = match ip {
            std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, std::net::IpAddr::V4),
            v4 => v4,
        };
        self.allowed_cidrs.is_empty() || self.allowed_cidrs.iter().any(|net| net.contains(&ip))
    }

    /// The names of the key's permissions (`None`: every permission its scope and role
    /// allow), in vocabulary order.
    /// Serializes as `null` or the list of names, without allocating.
    pub fn permission_names(&self) -> Option<crate::vocabulary::NamedSet<'static>> {
        self.permissions.map(|set| self.vocabulary.named(set))
    }

    /// The same key with its permissions read in `vocabulary`, by name: names it does not
    /// declare move to [`Self::unrecognized_permissions`] (and grant nothing), unrecognized
    /// names it declares come back.
    #[must_use]
    pub fn in_vocabulary(mut self, vocabulary: &'static Vocabulary) -> Self {
        if std::ptr::eq(self.vocabulary, vocabulary) || self.vocabulary == vocabulary {
            return self;
        }
        if let Some(set) = self.permissions {
            let mut names: Vec<&str> = self.vocabulary.names(set).collect();
            names.extend(self.unrecognized_permissions.iter().map(String::as_str));
            let (set, unknown) = vocabulary.decode(names);
            self.permissions = Some(set);
            self.unrecognized_permissions = unknown;
        }
        self.vocabulary = vocabulary;
        self
    }

    /// The key's status at `now`. Revocation wins over expiry, expiry over suspension.
    pub fn status_at(&self, now: DateTime<Utc>) -> KeyStatus {
        if self.revoked_at.is_some() {
            KeyStatus::Revoked
        } else if self.expires_at.is_some_and(|e| e <= now) {
            KeyStatus::Expired
        } else if self.suspended_at.is_some() {
            KeyStatus::Suspended
        } else {
            KeyStatus::Active
        }
    }
}
