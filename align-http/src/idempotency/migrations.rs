//! The schema migrations of the shared `Idempotency-Key` replies, one `.sql` file per version under `migrations/<dialect>/`,
//! embedded here in order (see [`align_core::migrations`]).

/// The PostgreSQL migrations, one file each in `migrations/postgres/`: entry `i` brings the
/// schema to version `i + 1` (recorded in `idempotency_migrations`).
pub(crate) const POSTGRES: &[&str] = &[include_str!("../../migrations/postgres/0001_init.sql")];

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::path::PathBuf;

    use align_core::migrations::{check_files, check_unchanged};

    /// The migrations as an earlier version released them (see the fixture's note).
    fn released(dialect: &str) -> Vec<String> {
        let fixture: serde_json::Value = serde_json::from_str(include_str!(
            "../../tests/fixtures/released-migrations.json"
        ))
        .unwrap();
        serde_json::from_value(fixture[dialect].clone()).unwrap()
    }

    fn folder(dialect: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("migrations")
            .join(dialect)
    }

    #[test]
    fn postgres_migrations_are_the_files_numbered_from_one() {
        check_files(&folder("postgres"), super::POSTGRES).unwrap();
    }

    #[test]
    fn postgres_migrations_released_earlier_are_unchanged() {
        check_unchanged(super::POSTGRES, &released("postgres")).unwrap();
    }

    #[tokio::test]
    async fn postgres_migrations_run_once_and_take_released_databases_as_they_are() {
        let Ok(url) = std::env::var("ALIGN_TEST_POSTGRES_URL") else {
            eprintln!("skipping: ALIGN_TEST_POSTGRES_URL is not set");
            return;
        };
        align_core::migrations::check_postgres(
            &url,
            "idempotency",
            super::POSTGRES,
            &released("postgres"),
        )
        .await
        .unwrap();
    }
}
