//! The schema migrations of the webhook store, one `.sql` file per version under `migrations/<dialect>/`,
//! embedded here in order (see [`align_core::migrations`]).

/// The SQLite migrations, one file each in `migrations/sqlite/`: entry `i` brings the
/// schema to version `i + 1` (recorded in `webhooks_migrations`).
#[cfg(feature = "sqlite")]
pub(crate) const SQLITE: &[&str] = &[
    include_str!("../../migrations/sqlite/0001_init.sql"),
    include_str!("../../migrations/sqlite/0002_seen.sql"),
    include_str!("../../migrations/sqlite/0003_owners.sql"),
    include_str!("../../migrations/sqlite/0004_messages_by_owner.sql"),
    include_str!("../../migrations/sqlite/0005_cheaper_dispatch.sql"),
    include_str!("../../migrations/sqlite/0006_sealing.sql"),
    include_str!("../../migrations/sqlite/0007_endpoints_by_owner.sql"),
];

/// The PostgreSQL migrations, one file each in `migrations/postgres/`: entry `i` brings the
/// schema to version `i + 1` (recorded in `webhooks_migrations`).
#[cfg(feature = "postgres")]
pub(crate) const POSTGRES: &[&str] = &[
    include_str!("../../migrations/postgres/0001_init.sql"),
    include_str!("../../migrations/postgres/0002_sealing.sql"),
    include_str!("../../migrations/postgres/0003_endpoints_by_owner.sql"),
];

align_core::migration_tests!(
    "webhooks",
    sqlite = super::SQLITE,
    postgres = super::POSTGRES
);
