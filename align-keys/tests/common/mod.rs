//! Shared fixtures: an organisation with an admin, and a manager over a chosen store.

#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;

use align_keys::store::KeyStore;
use align_keys::*;
use chrono::Utc;

pub struct Fixture {
    pub org: Organization,
    pub admin: User,
    pub project: Project,
}

pub async fn seed(store: &dyn KeyStore) -> Fixture {
    let now = Utc::now();
    let org = Organization {
        id: OrganizationId::new(),
        name: "Acme".into(),
        security_contact: None,
        leak_policy: align_keys::LeakPolicy::default(),
        privacy_contact: None,
        created_at: now,
    };
    store.create_organization(&org).await.unwrap();
    let admin = User {
        id: UserId::new(),
        organization_id: org.id,
        email: "admin@acme.test".into(),
        name: None,
        role: Role::Admin,
        created_at: now,
    };
    store.create_user(&admin).await.unwrap();
    let project = Project {
        id: ProjectId::new(),
        organization_id: org.id,
        name: "billing".into(),
        created_at: now,
    };
    store.create_project(&project).await.unwrap();
    Fixture {
        org,
        admin,
        project,
    }
}

pub fn new_key(f: &Fixture, name: &str, env: Environment) -> NewKey {
    NewKey {
        name: name.into(),
        organization_id: f.org.id,
        scope: Scope::Organization,
        permissions: None,
        environment: env,
        created_by: f.admin.id,
        expires_at: None,
        rate_limit_per_minute: None,
        allowed_cidrs: vec![],
        owner_id: None,
        meta: None,
    }
}

pub fn manager(store: Arc<dyn KeyStore>) -> KeyManager {
    KeyManager::new(store, Arc::new(Sha256Hasher))
}

/// The PostgreSQL database to test against (`ALIGN_TEST_POSTGRES_URL`), or `None` after
/// printing why PostgreSQL is skipped.
pub fn postgres_url() -> Option<String> {
    match std::env::var("ALIGN_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            skipping_postgres();
            None
        }
    }
}

/// Says once per test binary, past the test harness's output capture, why PostgreSQL is not
/// tested.
pub fn skipping_postgres() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "skipping PostgreSQL tests: ALIGN_TEST_POSTGRES_URL is not set"
        );
    });
}
