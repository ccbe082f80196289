//! The schema migrations of the key store, one `.sql` file per version under `migrations/<dialect>/`,
//! embedded here in order (see [`align_core::migrations`]).

/// The SQLite migrations, one file each in `migrations/sqlite/`: entry `i` brings the
/// schema to version `i + 1` (recorded in `keys_migrations`).
#[cfg(feature = "sqlite")]
pub(crate) const SQLITE: &[&str] = &[
    include_str!("../../migrations/sqlite/0001_init.sql"),
    include_str!("../../migrations/sqlite/0002_key_limits_and_cidrs.sql"),
    include_str!("../../migrations/sqlite/0003_key_changes.sql"),
    include_str!("../../migrations/sqlite/0004_user_passwords_and_sessions.sql"),
    include_str!("../../migrations/sqlite/0005_role_changes_are_key_changes.sql"),
    include_str!("../../migrations/sqlite/0006_leaked_keys.sql"),
    include_str!("../../migrations/sqlite/0007_privacy.sql"),
    include_str!("../../migrations/sqlite/0008_key_owner_and_meta.sql"),
    include_str!("../../migrations/sqlite/0009_keyspaces.sql"),
];

/// The PostgreSQL migrations, one file each in `migrations/postgres/`: entry `i` brings the
/// schema to version `i + 1` (recorded in `keys_migrations`).
#[cfg(feature = "postgres")]
pub(crate) const POSTGRES: &[&str] = &[
    include_str!("../../migrations/postgres/0001_init.sql"),
    include_str!("../../migrations/postgres/0002_user_passwords_and_sessions.sql"),
    include_str!("../../migrations/postgres/0003_role_changes_are_key_changes.sql"),
    include_str!("../../migrations/postgres/0004_leaked_keys.sql"),
    include_str!("../../migrations/postgres/0005_privacy.sql"),
    include_str!("../../migrations/postgres/0006_key_owner_and_meta.sql"),
    include_str!("../../migrations/postgres/0007_keyspaces.sql"),
];

align_core::migration_tests!("keys", sqlite = super::SQLITE, postgres = super::POSTGRES);
