//! The schema migrations of the shared `Idempotency-Key` replies, one `.sql` file per version under `migrations/<dialect>/`,
//! embedded here in order (see [`align_core::migrations`]).

/// The PostgreSQL migrations, one file each in `migrations/postgres/`: entry `i` brings the
/// schema to version `i + 1` (recorded in `idempotency_migrations`).
pub(crate) const POSTGRES: &[&str] = &[include_str!("../../migrations/postgres/0001_init.sql")];

align_core::migration_tests!("idempotency", postgres = super::POSTGRES);
