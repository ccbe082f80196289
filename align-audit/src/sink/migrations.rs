//! The schema migrations of the audit sinks, one `.sql` file per version under `migrations/<dialect>/`,
//! embedded here in order (see [`align_core::migrations`]).

/// The SQLite migrations, one file each in `migrations/sqlite/`: entry `i` brings the
/// schema to version `i + 1` (recorded in `audit_migrations`).
#[cfg(feature = "sqlite")]
pub(crate) const SQLITE: &[&str] = &[
    include_str!("../../migrations/sqlite/0001_init.sql"),
    include_str!("../../migrations/sqlite/0002_partial_indexes.sql"),
    include_str!("../../migrations/sqlite/0003_pending.sql"),
];

/// The PostgreSQL migrations, one file each in `migrations/postgres/`: entry `i` brings the
/// schema to version `i + 1` (recorded in `audit_migrations`).
#[cfg(feature = "postgres")]
pub(crate) const POSTGRES: &[&str] = &[
    include_str!("../../migrations/postgres/0001_init.sql"),
    include_str!("../../migrations/postgres/0002_pending.sql"),
];

align_core::migration_tests!("audit", sqlite = super::SQLITE, postgres = super::POSTGRES);
