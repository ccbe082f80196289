//! Permission vocabularies: the names a deployment's keys may hold (DESIGN §3, "Open
//! vocabulary").
//!
//! A [`Vocabulary`] is an ordered list of up to [`MAX_PERMISSIONS`] names of the form
//! `resource:action` (lowercase ASCII letters, digits, `_`, `-`), declared once (usually as a
//! `const`) and given to the key store. A [`Permission`] is one name's position in it and a
//! [`PermissionSet`] a bit set over those positions, so checking a permission on the hot path
//! is one AND.
//!
//! The reference server's vocabulary is [`Vocabulary::SERVER`]; the associated constants
//! [`Permission::KeysRead`] and so on name its permissions.
//!
//! Requests may name every permission of one resource with the wildcard `resource:*`. A
//! wildcard is **expanded when the request is parsed** ([`Vocabulary::parse`]): a key minted
//! with `invoices:*` holds the `invoices:` names declared at that moment, stored one by one,
//! and gains nothing when a later release declares `invoices:refund`. A key minted without a
//! list (`permissions: None`) holds every permission its scope and role allow, including
//! names declared later.
//!
//! A stored name the vocabulary does not declare (a permission an older release knew, or a
//! row written by another service) grants nothing. It is not an error: the key still
//! verifies, the name is kept in [`KeyRecord::unrecognized_permissions`](crate::KeyRecord)
//! (that is the report: an embedder can log or alert on it), it is written back unchanged
//! when the key is saved, and a rotation's successor carries it too.
//!
//! ```
//! use align_keys::{Permission, Vocabulary};
//!
//! const INVOICES: Vocabulary =
//!     Vocabulary::new(&["invoices:read", "invoices:write", "customers:read"]);
//! const INVOICES_WRITE: Permission = INVOICES.permission("invoices:write");
//!
//! let granted = INVOICES.parse(["invoices:*"]).unwrap();
//! assert!(granted.contains(INVOICES_WRITE));
//! assert!(!granted.contains(INVOICES.permission("customers:read")));
//! assert_eq!(INVOICES.names(granted).collect::<Vec<_>>(), ["invoices:read", "invoices:write"]);
//! assert!(INVOICES.parse(["refunds:*"]).is_err());
//! ```

use std::fmt;

/// Most names a vocabulary may declare (the width of [`PermissionSet`]).
pub const MAX_PERMISSIONS: usize = 64;
/// Longest permission name accepted, in bytes.
pub const MAX_PERMISSION_LEN: usize = 128;

/// One permission: a name's position in its [`Vocabulary`], and the name.
///
/// Get one from [`Vocabulary::permission`] (in a `const`) or [`Vocabulary::get`]; the
/// reference server's are associated constants (`Permission::KeysRead`, …).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Permission {
    bit: u8,
    name: &'static str,
}

#[allow(
    non_upper_case_globals,
    reason = "the reference server's permissions keep the names they had as enum variants"
)]
impl Permission {
    /// `keys:read`
    pub const KeysRead: Self = Vocabulary::SERVER.permission("keys:read");
    /// `keys:write` (mint, revoke, rotate, suspend, update)
    pub const KeysWrite: Self = Vocabulary::SERVER.permission("keys:write");
    /// `webhooks:read`
    pub const WebhooksRead: Self = Vocabulary::SERVER.permission("webhooks:read");
    /// `webhooks:write`
    pub const WebhooksWrite: Self = Vocabulary::SERVER.permission("webhooks:write");
    /// `audit:read`
    pub const AuditRead: Self = Vocabulary::SERVER.permission("audit:read");
    /// `projects:read`
    pub const ProjectsRead: Self = Vocabulary::SERVER.permission("projects:read");
    /// `projects:write`
    pub const ProjectsWrite: Self = Vocabulary::SERVER.permission("projects:write");
    /// `organization:read`
    pub const OrganizationRead: Self = Vocabulary::SERVER.permission("organization:read");
    /// `organization:write` (settings such as the security contact)
    pub const OrganizationWrite: Self = Vocabulary::SERVER.permission("organization:write");
    /// `privacy:read`: export what Align holds about a person or a key (admins only).
    pub const PrivacyRead: Self = Vocabulary::SERVER.permission("privacy:read");
    /// `privacy:write`: erase a person's data, correct or delete other users (admins only).
    pub const PrivacyWrite: Self = Vocabulary::SERVER.permission("privacy:write");
    /// `keyspaces:read`: see key spaces and the keys minted in them.
    pub const KeyspacesRead: Self = Vocabulary::SERVER.permission("keyspaces:read");
    /// `keyspaces:write`: create key spaces, mint and change their keys.
    pub const KeyspacesWrite: Self = Vocabulary::SERVER.permission("keyspaces:write");
    /// `keys:verify`: verify key space keys (`POST /keys/verify`).
    pub const KeysVerify: Self = Vocabulary::SERVER.permission("keys:verify");
}

impl Permission {
    /// The wire name, e.g. `keys:read`.
    pub const fn as_str(self) -> &'static str {
        self.name
    }

    /// The part before the colon, e.g. `keys`.
    pub fn resource(self) -> &'static str {
        self.name.split_once(':').map_or(self.name, |(r, _)| r)
    }

    /// The part after the colon, e.g. `read`.
    pub fn action(self) -> &'static str {
        self.name.split_once(':').map_or("", |(_, a)| a)
    }

    /// Whether this permission only reads (its action is `read`).
    pub fn is_read(self) -> bool {
        self.action() == "read"
    }

    const fn mask(self) -> u64 {
        1 << self.bit
    }
}

impl fmt::Debug for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

/// A set of permissions of one vocabulary, as a bit set (cheap to copy and intersect). Its
/// names come from the vocabulary: [`Vocabulary::names`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PermissionSet(u64);

impl PermissionSet {
    /// No permissions.
    pub const EMPTY: Self = Self(0);
    /// Every permission of the reference server's vocabulary ([`Vocabulary::SERVER`]); for
    /// another vocabulary, [`Vocabulary::all`].
    pub const ALL: Self = Vocabulary::SERVER.all();

    /// A set of one permission.
    pub const fn only(p: Permission) -> Self {
        Self(p.mask())
    }

    /// Whether `p` is in the set.
    pub const fn contains(self, p: Permission) -> bool {
        self.0 & p.mask() != 0
    }

    /// The permissions in both sets.
    pub const fn intersect(self, other: Self) -> Self {
        Self(self.0 & other.0)
    }

    /// The permissions in either set.
    pub const fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// The permissions here but not in `other`.
    pub const fn minus(self, other: Self) -> Self {
        Self(self.0 & !other.0)
    }

    /// Whether every permission here is also in `other`.
    pub const fn is_subset_of(self, other: Self) -> bool {
        self.0 & !other.0 == 0
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The raw bits, one per position in the vocabulary (for tests and compact storage).
    pub const fn bits(self) -> u64 {
        self.0
    }

    /// The set with these raw bits (see [`Self::bits`]); positions the vocabulary does not
    /// declare grant nothing.
    pub const fn from_bits(bits: u64) -> Self {
        Self(bits)
    }

    /// The permissions of the reference server's vocabulary in the set, in declaration order
    /// (for another vocabulary, [`Vocabulary::iter_set`]).
    pub fn iter(self) -> impl Iterator<Item = Permission> {
        Vocabulary::SERVER.iter_set(self)
    }
}

impl FromIterator<Permission> for PermissionSet {
    fn from_iter<I: IntoIterator<Item = Permission>>(iter: I) -> Self {
        iter.into_iter()
            .fold(Self::EMPTY, |s, p| s.union(Self::only(p)))
    }
}

impl fmt::Debug for PermissionSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PermissionSet({:#x})", self.0)
    }
}

/// A set with its vocabulary: serializes as the list of its names (in declaration order)
/// without allocating ([`Vocabulary::named`]).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct NamedSet<'v> {
    vocabulary: &'v Vocabulary,
    set: PermissionSet,
}

impl NamedSet<'_> {
    /// The names, in declaration order.
    pub fn iter(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.vocabulary.names(self.set)
    }

    /// The set.
    pub const fn set(&self) -> PermissionSet {
        self.set
    }
}

impl fmt::Debug for NamedSet<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl serde::Serialize for NamedSet<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

/// A name that is not a declared permission, or a wildcard that matches none. Its message
/// repeats the name only when it has a permission name's shape, so that a secret pasted into
/// a permission list never reaches an error message or a log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", describe_unknown(.0))]
pub struct UnknownPermission(pub String);

fn describe_unknown(name: &str) -> String {
    let shaped = is_valid_name(name)
        || name
            .strip_suffix(":*")
            .is_some_and(|r| is_valid_name(&format!("{r}:x")));
    if shaped && name.len() <= 64 {
        format!("unknown permission `{name}`")
    } else {
        String::from("a permission must be a declared resource:action name or resource:*")
    }
}

/// Why a list of names cannot be a vocabulary.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VocabularyError {
    /// More than [`MAX_PERMISSIONS`] names.
    #[error("a vocabulary declares at most 64 permissions")]
    TooMany,
    /// A name is not `resource:action` in lowercase ASCII letters, digits, `_` and `-`.
    #[error("`{0}` is not a permission name of the form resource:action")]
    BadName(String),
    /// A name appears twice.
    #[error("`{0}` is declared twice")]
    Duplicate(String),
}

/// The permission names a deployment's keys may hold, and the rules that bound them by role
/// and scope (see the [module documentation](self)).
///
/// Build one in a `const` with [`Vocabulary::new`] (a bad name fails the build) or at run time
/// with [`Vocabulary::try_new`] / [`Vocabulary::from_names`], and give it to the store
/// (`MemoryKeyStore::with_vocabulary`, …). The rules default to the least surprising for an
/// embedder: admins hold everything, engineers everything but [`Self::admin_only`] names,
/// viewers the `…:read` names that are not admin-only; project-scoped keys hold everything
/// but [`Self::organization_wide`] names.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Vocabulary {
    names: &'static [&'static str],
    all: u64,
    reads: u64,
    admin_only: u64,
    organization_wide: u64,
    refused_not_narrowed: u64,
    organization_readable: u64,
    mint: Option<Permission>,
}

impl fmt::Debug for Vocabulary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vocabulary")
            .field("names", &self.names)
            .finish_non_exhaustive()
    }
}

const fn valid_part(b: &[u8], start: usize, end: usize) -> bool {
    if start >= end {
        return false;
    }
    let mut i = start;
    while i < end {
        let c = b[i];
        if !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'-') {
            return false;
        }
        i += 1;
    }
    true
}

/// Whether `name` is `resource:action` in lowercase ASCII letters, digits, `_` and `-`.
pub const fn is_valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    if b.len() > MAX_PERMISSION_LEN {
        return false;
    }
    let mut colon = 0;
    let mut colons = 0;
    let mut i = 0;
    while i < b.len() {
        if b[i] == b':' {
            colon = i;
            colons += 1;
        }
        i += 1;
    }
    colons == 1 && valid_part(b, 0, colon) && valid_part(b, colon + 1, b.len())
}

const fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

const fn ends_with_read(name: &str) -> bool {
    let b = name.as_bytes();
    let n = b.len();
    n >= 5
        && b[n - 5] == b':'
        && b[n - 4] == b'r'
        && b[n - 3] == b'e'
        && b[n - 2] == b'a'
        && b[n - 1] == b'd'
}

const fn check(names: &[&str]) -> Result<(), usize> {
    let mut i = 0;
    while i < names.len() {
        if !is_valid_name(names[i]) {
            return Err(i);
        }
        let mut j = 0;
        while j < i {
            if same(names[i], names[j]) {
                return Err(i);
            }
            j += 1;
        }
        i += 1;
    }
    Ok(())
}

impl Vocabulary {
    /// The reference server's vocabulary: its fourteen permissions, with `organization:write`
    /// and the privacy permissions for admins only, organisation-wide changes kept from
    /// project-scoped and sandbox keys, `keys:write` needed to mint, and a privacy permission
    /// asked for where it cannot hold refused rather than narrowed away.
    pub const SERVER: Self = Self::new(&[
        "keys:read",
        "keys:write",
        "webhooks:read",
        "webhooks:write",
        "audit:read",
        "projects:read",
        "projects:write",
        "organization:read",
        "organization:write",
        "privacy:read",
        "privacy:write",
        "keyspaces:read",
        "keyspaces:write",
        "keys:verify",
    ])
    .with_admin_only(&["organization:write", "privacy:read", "privacy:write"])
    .with_organization_wide(&[
        "organization:write",
        "projects:write",
        "privacy:read",
        "privacy:write",
    ])
    .with_refused_not_narrowed(&["privacy:read", "privacy:write"])
    .with_organization_readable(&["organization:read"])
    .with_mint_permission("keys:write");

    /// A vocabulary of `names`, in this order, with the default rules. For a `const`: an
    /// invalid, duplicate or 65th name fails the build (at run time it panics; use
    /// [`Self::try_new`] for names that come from input).
    pub const fn new(names: &'static [&'static str]) -> Self {
        assert!(
            names.len() <= MAX_PERMISSIONS,
            "a vocabulary declares at most 64 permissions"
        );
        assert!(
            check(names).is_ok(),
            "permission names must be distinct resource:action names"
        );
        let all = if names.len() == MAX_PERMISSIONS {
            u64::MAX
        } else {
            (1u64 << names.len()) - 1
        };
        let mut reads = 0;
        let mut i = 0;
        while i < names.len() {
            if ends_with_read(names[i]) {
                reads |= 1 << i;
            }
            i += 1;
        }
        Self {
            names,
            all,
            reads,
            admin_only: 0,
            organization_wide: 0,
            refused_not_narrowed: 0,
            organization_readable: 0,
            mint: None,
        }
    }

    /// [`Self::new`] for names checked at run time.
    pub fn try_new(names: &'static [&'static str]) -> Result<Self, VocabularyError> {
        if names.len() > MAX_PERMISSIONS {
            return Err(VocabularyError::TooMany);
        }
        match check(names) {
            Ok(()) => Ok(Self::new(names)),
            Err(i) => {
                let name = names[i].to_owned();
                Err(if is_valid_name(&name) {
                    VocabularyError::Duplicate(name)
                } else {
                    VocabularyError::BadName(name)
                })
            }
        }
    }

    /// A vocabulary of names read at run time (a configuration file). The names are
    /// allocated once for the life of the process, so call it once at start-up.
    pub fn from_names<I, S>(names: I) -> Result<Self, VocabularyError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let names: Vec<String> = names.into_iter().map(Into::into).collect();
        if names.len() > MAX_PERMISSIONS {
            return Err(VocabularyError::TooMany);
        }
        if let Some(bad) = names.iter().find(|n| !is_valid_name(n)) {
            return Err(VocabularyError::BadName(bad.clone()));
        }
        for (i, n) in names.iter().enumerate() {
            if names[..i].contains(n) {
                return Err(VocabularyError::Duplicate(n.clone()));
            }
        }
        let leaked: Vec<&'static str> = names
            .into_iter()
            .map(|n| &*Box::leak(n.into_boxed_str()))
            .collect();
        Self::try_new(Box::leak(leaked.into_boxed_slice()))
    }

    const fn mask_of(&self, names: &[&str]) -> u64 {
        let mut mask = 0;
        let mut i = 0;
        while i < names.len() {
            mask |= self.permission(names[i]).mask();
            i += 1;
        }
        mask
    }

    /// These names are for admins (and their keys) only: engineers and viewers never hold
    /// them. Each must be declared (else the build fails).
    #[must_use]
    pub const fn with_admin_only(mut self, names: &[&str]) -> Self {
        self.admin_only = self.mask_of(names);
        self
    }

    /// These names act on the whole organisation: project-scoped keys never hold them, and
    /// sandbox keys are refused them (`SandboxOrganizationChange`).
    #[must_use]
    pub const fn with_organization_wide(mut self, names: &[&str]) -> Self {
        self.organization_wide = self.mask_of(names);
        self
    }

    /// These names, asked for where they cannot hold (by a minter without them, or for a key
    /// whose scope excludes them), make the mint fail instead of being narrowed away, so no key
    /// lists one it could not use.
    #[must_use]
    pub const fn with_refused_not_narrowed(mut self, names: &[&str]) -> Self {
        self.refused_not_narrowed = self.mask_of(names);
        self
    }

    /// With these names a project-scoped key (or an engineer) may act on organisation-level
    /// objects (the server: reading the organisation itself).
    #[must_use]
    pub const fn with_organization_readable(mut self, names: &[&str]) -> Self {
        self.organization_readable = self.mask_of(names);
        self
    }

    /// The permission a key needs to mint keys (the server: `keys:write`). Without one, keys
    /// mint no keys; users and the operator still do.
    #[must_use]
    pub const fn with_mint_permission(mut self, name: &str) -> Self {
        self.mint = Some(self.permission(name));
        self
    }

    /// The permission named `name`, for a `const`: an undeclared name fails the build (at run
    /// time it panics; use [`Self::get`] for names from input).
    #[allow(
        clippy::panic,
        reason = "evaluated in a const, an undeclared name must fail the build; names from input go through `get`"
    )]
    pub const fn permission(&self, name: &str) -> Permission {
        let mut i = 0;
        while i < self.names.len() {
            if same(self.names[i], name) {
                return Permission {
                    bit: i as u8,
                    name: self.names[i],
                };
            }
            i += 1;
        }
        panic!("permission not declared in this vocabulary")
    }

    /// The permission named `name`, if declared.
    pub fn get(&self, name: &str) -> Option<Permission> {
        self.names
            .iter()
            .position(|n| *n == name)
            .and_then(|i| self.at(i))
    }

    fn at(&self, i: usize) -> Option<Permission> {
        Some(Permission {
            bit: u8::try_from(i).ok()?,
            name: self.names.get(i)?,
        })
    }

    /// The declared names, in order.
    pub const fn declared(&self) -> &'static [&'static str] {
        self.names
    }

    /// How many names it declares.
    pub const fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether it declares no names.
    pub const fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Every declared permission, in order.
    pub fn iter(&self) -> impl Iterator<Item = Permission> + '_ {
        (0..self.names.len()).filter_map(|i| self.at(i))
    }

    /// The permissions of `set`, in declaration order.
    pub fn iter_set(&self, set: PermissionSet) -> impl Iterator<Item = Permission> + '_ {
        self.iter().filter(move |p| set.contains(*p))
    }

    /// The names of `set`, in declaration order.
    pub fn names(&self, set: PermissionSet) -> impl Iterator<Item = &'static str> + '_ {
        self.iter_set(set).map(Permission::as_str)
    }

    /// `set` with this vocabulary, to print or serialize its names.
    pub const fn named(&self, set: PermissionSet) -> NamedSet<'_> {
        NamedSet {
            vocabulary: self,
            set,
        }
    }

    /// This vocabulary for the life of the process, for one built at run time (stores and
    /// records refer to their vocabulary). A `const` one needs no leak: `&MY_VOCABULARY`.
    pub fn leak(self) -> &'static Self {
        Box::leak(Box::new(self))
    }

    /// Every declared permission.
    pub const fn all(&self) -> PermissionSet {
        PermissionSet(self.all)
    }

    /// The set named by `names`, each a declared name or a wildcard `resource:*` (every
    /// declared name of that resource, expanded now). An undeclared name, or a wildcard that
    /// matches nothing, is an error.
    pub fn parse<I, S>(&self, names: I) -> Result<PermissionSet, UnknownPermission>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut set = PermissionSet::EMPTY;
        for name in names {
            let name = name.as_ref();
            let found = match name.strip_suffix(":*") {
                Some(resource) => self
                    .iter()
                    .filter(|p| p.resource() == resource)
                    .collect::<PermissionSet>(),
                None => self
                    .get(name)
                    .map_or(PermissionSet::EMPTY, PermissionSet::only),
            };
            if found.is_empty() {
                return Err(UnknownPermission(name.to_owned()));
            }
            set = set.union(found);
        }
        Ok(set)
    }

    /// Reads stored names: the declared ones as a set, and the others, which grant nothing,
    /// as they were (so that saving the key writes them back). Never fails.
    pub fn decode<'t>(
        &self,
        names: impl IntoIterator<Item = &'t str>,
    ) -> (PermissionSet, Vec<String>) {
        let mut set = PermissionSet::EMPTY;
        let mut unrecognized = Vec::new();
        for name in names {
            match self.get(name) {
                Some(p) => set = set.union(PermissionSet::only(p)),
                None => unrecognized.push(name.to_owned()),
            }
        }
        (set, unrecognized)
    }

    /// What a role allows, before scope and key permissions narrow it.
    pub const fn role_permissions(&self, role: crate::Role) -> PermissionSet {
        let all = self.all;
        PermissionSet(match role {
            crate::Role::Admin => all,
            crate::Role::Engineer => all & !self.admin_only,
            crate::Role::Viewer => self.reads & !self.admin_only,
        })
    }

    /// What a scope allows: project-scoped keys hold no organisation-wide permission.
    pub const fn scope_permissions(&self, scope: crate::Scope) -> PermissionSet {
        PermissionSet(match scope {
            crate::Scope::Organization => self.all,
            crate::Scope::Project(_) => self.all & !self.organization_wide,
        })
    }

    /// The organisation-wide permissions ([`Self::with_organization_wide`]).
    pub const fn organization_wide(&self) -> PermissionSet {
        PermissionSet(self.organization_wide)
    }

    /// The admin-only permissions ([`Self::with_admin_only`]).
    pub const fn admin_only(&self) -> PermissionSet {
        PermissionSet(self.admin_only)
    }

    /// The permissions refused rather than narrowed ([`Self::with_refused_not_narrowed`]).
    pub const fn refused_not_narrowed(&self) -> PermissionSet {
        PermissionSet(self.refused_not_narrowed)
    }

    /// The permissions usable on organisation-level objects by project-scoped keys
    /// ([`Self::with_organization_readable`]).
    pub const fn organization_readable(&self) -> PermissionSet {
        PermissionSet(self.organization_readable)
    }

    /// The permission a key needs to mint keys ([`Self::with_mint_permission`]).
    pub const fn mint_permission(&self) -> Option<Permission> {
        self.mint
    }
}

impl Default for Vocabulary {
    /// [`Vocabulary::SERVER`].
    fn default() -> Self {
        Self::SERVER
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_permissions_keep_their_positions_and_names() {
        let names: Vec<_> = Vocabulary::SERVER.iter().map(Permission::as_str).collect();
        assert_eq!(names.len(), 14);
        assert_eq!(Permission::KeysRead.as_str(), "keys:read");
        assert_eq!(Permission::PrivacyWrite.as_str(), "privacy:write");
        // Added after the first eleven (stored names keep their bits).
        assert_eq!(
            names[11..],
            ["keyspaces:read", "keyspaces:write", "keys:verify"]
        );
        assert_eq!(PermissionSet::ALL.bits(), (1 << 14) - 1);
    }

    #[test]
    fn names_must_be_lowercase_resource_action() {
        for bad in [
            "keys",
            "Keys:read",
            "keys:",
            ":read",
            "a:b:c",
            "keys:*",
            "keys read",
        ] {
            assert!(!is_valid_name(bad), "{bad}");
        }
        for good in ["keys:read", "invoices_v2:write-all", "a:b"] {
            assert!(is_valid_name(good), "{good}");
        }
    }

    #[test]
    fn duplicate_and_bad_names_are_refused_at_run_time() {
        assert_eq!(
            Vocabulary::from_names(["a:b", "a:b"]),
            Err(VocabularyError::Duplicate("a:b".into()))
        );
        assert_eq!(
            Vocabulary::from_names(["A:b"]),
            Err(VocabularyError::BadName("A:b".into()))
        );
        let many: Vec<String> = (0..65).map(|i| format!("r{i}:read")).collect();
        assert_eq!(Vocabulary::from_names(many), Err(VocabularyError::TooMany));
        let full: Vec<String> = (0..64).map(|i| format!("r{i}:read")).collect();
        let v = Vocabulary::from_names(full).unwrap_or_else(|_| unreachable!());
        assert_eq!(v.all().bits(), u64::MAX);
    }

    #[test]
    fn an_unknown_name_is_repeated_only_when_it_looks_like_a_permission() {
        let msg = |n: &str| UnknownPermission(n.to_owned()).to_string();
        assert_eq!(msg("invoices:read"), "unknown permission `invoices:read`");
        assert_eq!(msg("invoices:*"), "unknown permission `invoices:*`");
        // A token's shape, made here rather than written out (no key-shaped literal in the
        // sources).
        let token = ["ako", "9311c954", &"0123456789abcdefghij".repeat(3)].join("_");
        assert!(!msg(&token).contains("0123456789"));
        assert!(!msg("Bearer:xyz").contains("xyz"));
    }

    #[test]
    fn unknown_stored_names_are_kept_apart_and_grant_nothing() {
        let (set, unknown) = Vocabulary::SERVER.decode(["keys:read", "invoices:read"]);
        assert_eq!(set, PermissionSet::only(Permission::KeysRead));
        assert_eq!(unknown, ["invoices:read"]);
    }
}
