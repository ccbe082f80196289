//! Every operation of the API, through the client, against the real server (in process, on
//! an ephemeral loopback port, with a temporary data directory and the bootstrap admin key it
//! writes to `DATA_DIR/bootstrap-admin-key`), with webhooks delivered to a loopback receiver.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers outside #[test] functions fail the test loudly"
)]

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use align_client::{
    AuditEventQuery, Client, CreateKey, CreateKeyspace, CreateKeyspaceKey, CreateProject,
    CreateWebhookEndpoint, Credits, Environment, EraseSubject, Error, ErrorCode, EventQuery,
    KeyspaceKeyQuery, NamedLimit, PageParams, Refill, RefillInterval, ReportCompromise,
    RequestLogQuery, Rotate, UpdateKey, UpdateKeyspace, UpdateKeyspaceKey, UpdateOrganization,
    UpdateUser, UpdateWebhookEndpoint, UsageQuery, VerifyCode, VerifyKey,
};
use align_server::{Config, Server};
use futures_util::{StreamExt, TryStreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

/// The real server, stopped when dropped.
struct Running {
    addr: SocketAddr,
    admin_key: String,
    _dir: tempfile::TempDir,
    _stop: oneshot::Sender<()>,
}

async fn start() -> Running {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_owned(),
        ..Config::default()
    };
    config.webhooks.allow_private_targets = true;
    config.webhooks.poll_interval = Duration::from_millis(50);
    let key_file = config.bootstrap_key_path();
    let server = Server::start(config).await.unwrap();
    let addr = server.local_addr().unwrap();
    let admin_key = std::fs::read_to_string(key_file).unwrap().trim().to_owned();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        server
            .run(async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    Running {
        addr,
        admin_key,
        _dir: dir,
        _stop: stop,
    }
}

/// A webhook receiver on loopback that answers `200` to everything; counts what it got.
async fn receiver() -> (String, Arc<Mutex<usize>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let got = Arc::new(Mutex::new(0));
    let count = Arc::clone(&got);
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let count = Arc::clone(&count);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let _ = sock.read(&mut buf).await;
                *count.lock().unwrap() += 1;
                let _ = sock
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                    )
                    .await;
                let _ = sock.shutdown().await;
            });
        }
    });
    (format!("http://{addr}/hook"), got)
}

fn client(s: &Running, key: &str) -> Client {
    Client::builder(&format!("http://{}", s.addr))
        .api_key(key)
        .build()
        .unwrap()
}

/// The code of an API error, or the test fails with what came instead.
fn code<T: std::fmt::Debug>(r: Result<T, Error>) -> ErrorCode {
    match r {
        Err(Error::Api(e)) => {
            assert!(e.request_id.is_some(), "{e:?}");
            e.code
        }
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_answers_through_the_client() {
    let s = start().await;
    let admin = client(&s, &s.admin_key);
    let mut walked = BTreeSet::new();

    // ---- service ----
    assert_eq!(admin.health().await.unwrap().status, "ok");
    walked.insert("health");
    let me = admin.get_me().await.unwrap();
    assert_eq!(me.environment, Environment::Live);
    assert_eq!(admin.environment().await.unwrap(), Environment::Live);
    walked.insert("getMe");
    // The bootstrap key is an organisation-scoped live admin key with every permission, in a
    // one-organisation deployment: it may read the metrics.
    let metrics = admin.metrics().await.unwrap();
    assert!(metrics.contains("align_"), "{metrics}");
    walked.insert("metrics");
    assert_eq!(code(admin.security_txt().await), ErrorCode::NotFound);

    // ---- organisation ----
    let org = admin.get_organization().await.unwrap();
    assert_eq!(org.id, me.organization_id);
    walked.insert("getOrganization");
    let org = admin
        .update_organization(&UpdateOrganization {
            security_contact: Some(Some("security@example.com".into())),
            ..UpdateOrganization::default()
        })
        .await
        .unwrap();
    assert_eq!(
        org.security_contact.as_deref(),
        Some("security@example.com")
    );
    walked.insert("updateOrganization");
    let txt = admin.security_txt().await.unwrap();
    assert!(txt.contains("mailto:security@example.com"), "{txt}");
    walked.insert("securityTxt");

    // ---- projects ----
    let project = admin
        .create_project(&CreateProject {
            name: "walk".into(),
        })
        .await
        .unwrap();
    walked.insert("createProject");
    let page = admin.list_projects(&PageParams::limit(1)).await.unwrap();
    assert_eq!(page.data.len(), 1);
    let all: Vec<_> = admin
        .list_projects_stream(Some(1))
        .try_collect()
        .await
        .unwrap();
    assert!(all.iter().any(|p| p.id == project.id));
    walked.insert("listProjects");

    // ---- keys ----
    let minted = admin
        .create_key(&CreateKey::organization("walk"))
        .await
        .unwrap();
    assert!(minted.key.expose().starts_with("ako_"));
    walked.insert("createKey");
    let id = minted.resource.api_key_id;
    let page = admin.list_keys(&PageParams::limit(1)).await.unwrap();
    assert_eq!(page.data.len(), 1);
    assert!(page.next_cursor.is_some());
    let keys: Vec<_> = admin.list_keys_stream(Some(1)).try_collect().await.unwrap();
    assert!(keys.iter().any(|k| k.api_key_id == id));
    assert!(keys.len() >= 2);
    walked.insert("listKeys");
    assert_eq!(admin.get_key(id).await.unwrap().key_name, "walk");
    walked.insert("getKey");
    let updated = admin
        .update_key(
            id,
            &UpdateKey {
                name: Some("walk-renamed".into()),
                rate_limit_per_minute: Some(Some(100)),
                ..UpdateKey::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(updated.key_name, "walk-renamed");
    assert_eq!(updated.rate_limit_per_minute, Some(100));
    walked.insert("updateKey");
    // The minted key works through a client of its own.
    let walker = client(&s, minted.key.expose());
    assert_eq!(walker.get_me().await.unwrap().api_key_id, id);
    let successor = admin
        .rotate_key(
            id,
            &Rotate {
                grace_seconds: Some(60),
            },
        )
        .await
        .unwrap();
    assert_eq!(successor.resource.rotated_from_key_id, Some(id));
    walked.insert("rotateKey");
    let next = successor.resource.api_key_id;
    assert!(
        admin
            .suspend_key(next)
            .await
            .unwrap()
            .suspended_at
            .is_some()
    );
    walked.insert("suspendKey");
    assert_eq!(
        code(client(&s, successor.key.expose()).get_me().await),
        ErrorCode::KeySuspended
    );
    assert!(admin.resume_key(next).await.unwrap().suspended_at.is_none());
    walked.insert("resumeKey");
    // The request log may be written in batches: poll until the key's request is counted.
    for tries in 0.. {
        let usage = admin
            .get_key_usage(id, &UsageQuery::default())
            .await
            .unwrap();
        assert!(!usage.data.is_empty());
        if usage.data.iter().map(|b| b.requests).sum::<u64>() >= 1 {
            break;
        }
        assert!(tries < 100, "the key's requests never showed: {usage:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    walked.insert("getKeyUsage");
    assert!(admin.revoke_key(id).await.unwrap().revoked_at.is_some());
    walked.insert("revokeKey");
    assert_eq!(code(walker.get_me().await), ErrorCode::KeyRevoked);
    assert_eq!(
        code(admin.rotate_key(id, &Rotate::default()).await),
        ErrorCode::KeyNotActive
    );
    assert_eq!(
        code(admin.get_key(uuid::Uuid::new_v4()).await),
        ErrorCode::NotFound
    );

    // A project with an active key cannot be deleted; without one it can.
    let project_key = admin
        .create_key(&CreateKey::project("in-project", project.id))
        .await
        .unwrap();
    assert_eq!(
        code(admin.delete_project(project.id).await),
        ErrorCode::Conflict
    );
    admin
        .revoke_key(project_key.resource.api_key_id)
        .await
        .unwrap();
    admin.delete_project(project.id).await.unwrap();
    walked.insert("deleteProject");

    // A key over its rate limit gets a typed 429 with Retry-After; a wait longer than the
    // client's cap is returned at once rather than slept on.
    let limited = admin
        .create_key(&CreateKey::organization("limited"))
        .await
        .unwrap();
    admin
        .update_key(
            limited.resource.api_key_id,
            &UpdateKey {
                rate_limit_per_minute: Some(Some(1)),
                ..UpdateKey::default()
            },
        )
        .await
        .unwrap();
    let impatient = Client::builder(&format!("http://{}", s.addr))
        .api_key(limited.key.expose())
        .max_retry_wait(Duration::from_secs(1))
        .build()
        .unwrap();
    impatient.get_me().await.unwrap();
    let e = impatient.get_me().await.unwrap_err();
    let api = e.api().unwrap();
    assert_eq!(
        (api.status, &api.code),
        (429, &ErrorCode::RateLimit),
        "{e:?}"
    );
    assert!(api.retry_after.unwrap() > Duration::from_secs(1), "{api:?}");

    // ---- leaks ----
    let leaked = admin
        .create_key(&CreateKey::organization("leaked"))
        .await
        .unwrap();
    let report = admin
        .report_key_compromise(
            leaked.resource.api_key_id,
            &ReportCompromise {
                reason: Some("pasted in a ticket".into()),
            },
        )
        .await
        .unwrap();
    assert_eq!(report.report.action, "revoked");
    assert!(report.key.revoked_at.is_some());
    walked.insert("reportKeyCompromise");
    let leaks = admin
        .list_leak_reports(&PageParams::default())
        .await
        .unwrap();
    assert!(leaks.data.iter().any(|l| l.id == report.report.id));
    let leaks: Vec<_> = admin
        .list_leak_reports_stream(Some(1))
        .try_collect()
        .await
        .unwrap();
    assert_eq!(leaks.len(), 1);
    walked.insert("listLeakReports");
    let body = align_client::github_report_body(&[align_client::GithubToken {
        token: "not-a-token".into(),
        token_type: None,
        url: None,
        source: None,
    }])
    .unwrap();
    assert_eq!(
        code(
            admin
                .github_secret_scanning_report("unknown-key-id", "bm90LWEtc2lnbmF0dXJl", body)
                .await
        ),
        ErrorCode::InvalidSignature
    );
    walked.insert("githubSecretScanningReport");

    // ---- events, audit, request log ----
    let events = admin.list_events(&EventQuery::default()).await.unwrap();
    assert!(
        events
            .data
            .iter()
            .any(|e| e.event_type == "api_key.created")
    );
    let revoked: Vec<_> = admin
        .list_events_stream(EventQuery {
            event_type: Some("api_key.revoked".into()),
            page: PageParams::limit(1),
            ..EventQuery::default()
        })
        .try_collect()
        .await
        .unwrap();
    assert!(revoked.len() >= 2, "{revoked:?}");
    walked.insert("listEvents");
    let audit = admin
        .list_audit_events(&AuditEventQuery {
            action: Some("api_key.revoked".into()),
            ..AuditEventQuery::default()
        })
        .await
        .unwrap();
    assert!(!audit.data.is_empty());
    let first_three: Vec<_> = admin
        .list_audit_events_stream(AuditEventQuery {
            page: PageParams::limit(2),
            ..AuditEventQuery::default()
        })
        .take(3)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(first_three.len(), 3);
    walked.insert("listAuditEvents");
    for tries in 0.. {
        let query = RequestLogQuery {
            key_id: Some(me.api_key_id.to_string()),
            page: PageParams::limit(5),
            ..RequestLogQuery::default()
        };
        let page = admin.list_request_logs(&query).await.unwrap();
        if !page.data.is_empty() {
            let streamed: Vec<_> = admin
                .list_request_logs_stream(query)
                .take(6)
                .try_collect()
                .await
                .unwrap();
            assert_eq!(streamed.len(), 6, "the admin key made more than 6 requests");
            break;
        }
        assert!(tries < 100, "the admin key's requests never showed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    walked.insert("listRequestLogs");

    // ---- key spaces and verification ----
    keyspaces(&s, &admin, &mut walked).await;

    // ---- users and privacy ----
    let users = admin.list_users().await.unwrap();
    let me_user = users
        .data
        .iter()
        .find(|u| u.id == me.created_by_user_id)
        .unwrap()
        .clone();
    walked.insert("listUsers");
    let renamed = admin
        .update_user(
            me_user.id,
            &UpdateUser {
                name: Some(Some("Walker".into())),
                ..UpdateUser::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(renamed.name.as_deref(), Some("Walker"));
    walked.insert("updateUser");
    // The organisation's last admin cannot be deleted.
    assert_eq!(
        code(admin.delete_user(me_user.id, None).await),
        ErrorCode::Conflict
    );
    assert_eq!(
        code(admin.delete_user(uuid::Uuid::new_v4(), None).await),
        ErrorCode::NotFound
    );
    walked.insert("deleteUser");
    let export = admin.export_subject(&id.to_string()).await.unwrap();
    assert!(export.lines().count() >= 1);
    assert!(
        export
            .lines()
            .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok())
    );
    walked.insert("exportSubject");
    let erased = admin
        .erase_subject(&EraseSubject {
            subject: id.to_string(),
        })
        .await
        .unwrap();
    assert_eq!(erased.subject, id.to_string());
    walked.insert("eraseSubject");

    // ---- webhooks, with a sandbox key (sandbox endpoints may use http) ----
    let sandbox_token = admin
        .create_key(&CreateKey {
            environment: Some(Environment::Sandbox),
            ..CreateKey::organization("sandbox")
        })
        .await
        .unwrap();
    let sandbox = Client::builder(&format!("http://{}", s.addr))
        .api_key(sandbox_token.key.expose())
        .require_environment(Environment::Sandbox)
        .build()
        .unwrap();
    // The live admin key is refused by a client that requires sandbox.
    let guarded = Client::builder(&format!("http://{}", s.addr))
        .api_key(&s.admin_key)
        .require_environment(Environment::Sandbox)
        .build()
        .unwrap();
    assert!(matches!(
        guarded.list_keys(&PageParams::default()).await,
        Err(Error::EnvironmentMismatch {
            actual: Environment::Live,
            ..
        })
    ));
    let (url, received) = receiver().await;
    let endpoint = sandbox
        .create_webhook_endpoint(&CreateWebhookEndpoint {
            url: url.clone(),
            ..CreateWebhookEndpoint::default()
        })
        .await
        .unwrap();
    assert_eq!(sandbox.known_environment(), Some(Environment::Sandbox));
    assert!(endpoint.secret.is_some());
    assert_eq!(endpoint.endpoint.environment, Environment::Sandbox);
    walked.insert("createWebhookEndpoint");
    let ep = endpoint.endpoint.id;
    let page = sandbox
        .list_webhook_endpoints(&PageParams::default())
        .await
        .unwrap();
    assert_eq!(page.data.len(), 1);
    let eps: Vec<_> = sandbox
        .list_webhook_endpoints_stream(None)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(eps.len(), 1);
    walked.insert("listWebhookEndpoints");
    assert_eq!(sandbox.get_webhook_endpoint(ep).await.unwrap().url, url);
    walked.insert("getWebhookEndpoint");
    let changed = sandbox
        .update_webhook_endpoint(
            ep,
            &UpdateWebhookEndpoint {
                max_per_second: Some(Some(50)),
                ..UpdateWebhookEndpoint::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(changed.max_per_second, Some(50));
    walked.insert("updateWebhookEndpoint");
    let test = sandbox.test_webhook_endpoint(ep).await.unwrap();
    assert_eq!(test.event_type, "webhook.test");
    assert_eq!(test.delivery_ids.len(), 1);
    walked.insert("testWebhookEndpoint");
    // Wait until the test delivery has succeeded.
    let mut delivery = None;
    for _ in 0..200 {
        let page = sandbox
            .list_webhook_deliveries(ep, &PageParams::default())
            .await
            .unwrap();
        if let Some(d) = page
            .data
            .iter()
            .find(|d| d.id == test.delivery_ids[0] && d.status == "succeeded")
        {
            delivery = Some(d.clone());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let delivery = delivery.expect("the test delivery succeeded");
    assert!(*received.lock().unwrap() >= 1);
    let all: Vec<_> = sandbox
        .list_webhook_deliveries_stream(ep, Some(1))
        .try_collect()
        .await
        .unwrap();
    assert!(all.iter().any(|d| d.id == delivery.id));
    walked.insert("listWebhookDeliveries");
    let attempts = sandbox
        .list_webhook_attempts(delivery.id, &PageParams::default())
        .await
        .unwrap();
    assert_eq!(attempts.data[0].status, Some(200));
    let attempts: Vec<_> = sandbox
        .list_webhook_attempts_stream(delivery.id, Some(1))
        .try_collect()
        .await
        .unwrap();
    assert!(!attempts.is_empty());
    walked.insert("listWebhookAttempts");
    let retried = sandbox.retry_webhook_delivery(delivery.id).await.unwrap();
    assert_eq!(retried.id, delivery.id);
    walked.insert("retryWebhookDelivery");
    let recovered = sandbox
        .recover_webhook_deliveries(ep, chrono::Utc::now() - chrono::Duration::hours(1))
        .await
        .unwrap();
    assert_eq!(recovered.recovered, 0, "nothing failed");
    walked.insert("recoverWebhookDeliveries");
    let rotated = sandbox
        .rotate_webhook_secret(
            ep,
            &Rotate {
                grace_seconds: Some(60),
            },
        )
        .await
        .unwrap();
    assert!(rotated.secret.is_some());
    assert!(rotated.previous_secret_valid_until.is_some());
    assert_ne!(rotated.secret, endpoint.secret);
    walked.insert("rotateWebhookSecret");
    sandbox.delete_webhook_endpoint(ep).await.unwrap();
    assert_eq!(
        code(sandbox.get_webhook_endpoint(ep).await),
        ErrorCode::NotFound
    );
    walked.insert("deleteWebhookEndpoint");

    // Every operation the client has was walked.
    let all: BTreeSet<&str> = align_client::OPERATIONS.iter().map(|(id, _)| *id).collect();
    let missing: Vec<_> = all.difference(&walked).collect();
    assert!(missing.is_empty(), "not walked: {missing:?}");
}

/// Key spaces, their keys and verification (DESIGN §12), every operation of the `keyspaces` tag.
async fn keyspaces(s: &Running, admin: &Client, walked: &mut BTreeSet<&'static str>) {
    let space = admin
        .create_keyspace(&CreateKeyspace {
            name: "Acme API".into(),
            prefix: "acme".into(),
            permissions: vec!["invoices:read".into(), "invoices:write".into()],
        })
        .await
        .unwrap();
    assert_eq!(space.prefix, "acme");
    walked.insert("createKeyspace");
    let spaces: Vec<_> = admin
        .list_keyspaces_stream(Some(1))
        .try_collect()
        .await
        .unwrap();
    assert_eq!(spaces, std::slice::from_ref(&space));
    let page = admin.list_keyspaces(&PageParams::limit(1)).await.unwrap();
    assert_eq!(page.data.len(), 1);
    walked.insert("listKeyspaces");
    assert_eq!(admin.get_keyspace(space.id).await.unwrap(), space);
    walked.insert("getKeyspace");
    let renamed = admin
        .update_keyspace(
            space.id,
            &UpdateKeyspace {
                name: Some("Acme public API".into()),
                permissions: Some(vec![
                    "invoices:read".into(),
                    "invoices:write".into(),
                    "admin".into(),
                ]),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (renamed.name.as_str(), renamed.permissions.len()),
        ("Acme public API", 3)
    );
    walked.insert("updateKeyspace");

    let customer = admin
        .create_keyspace_key(
            space.id,
            &CreateKeyspaceKey {
                owner_id: Some("cus_8812".into()),
                permissions: vec!["invoices:read".into()],
                credits: Some(Credits {
                    remaining: 2,
                    refill: None,
                }),
                ratelimits: vec![NamedLimit {
                    name: "requests".into(),
                    limit: 100,
                    duration_seconds: 60,
                }],
                ..CreateKeyspaceKey::named("cus_8812 production")
            },
        )
        .await
        .unwrap();
    assert!(customer.key.expose().starts_with("acme_"));
    walked.insert("createKeyspaceKey");
    let id = customer.resource.id;
    admin
        .create_keyspace_key(
            space.id,
            &CreateKeyspaceKey {
                owner_id: Some("cus_1".into()),
                ..CreateKeyspaceKey::named("another customer")
            },
        )
        .await
        .unwrap();
    let page = admin
        .list_keyspace_keys(
            space.id,
            &KeyspaceKeyQuery {
                page: PageParams::limit(1),
                ..KeyspaceKeyQuery::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(page.data.len(), 1);
    assert!(page.next_cursor.is_some());
    let theirs: Vec<_> = admin
        .list_keyspace_keys_stream(
            space.id,
            KeyspaceKeyQuery {
                owner_id: Some("cus_8812".into()),
                page: PageParams::limit(1),
                ..KeyspaceKeyQuery::default()
            },
        )
        .try_collect()
        .await
        .unwrap();
    assert_eq!(theirs.iter().map(|k| k.id).collect::<Vec<_>>(), [id]);
    walked.insert("listKeyspaceKeys");
    let got = admin.get_keyspace_key(space.id, id).await.unwrap();
    assert_eq!(got, customer.resource);
    walked.insert("getKeyspaceKey");

    // A gateway's key may verify, and nothing else.
    let gateway = admin
        .create_key(&CreateKey {
            permissions: Some(vec!["keys:verify".into()]),
            ..CreateKey::organization("gateway")
        })
        .await
        .unwrap();
    let gateway = client(s, gateway.key.expose());
    assert_eq!(
        code(gateway.list_keyspaces(&PageParams::default()).await),
        ErrorCode::Forbidden
    );
    let token = customer.key.expose();
    let v = gateway
        .verify_key(&VerifyKey::new(token).permissions("invoices:read").cost(1))
        .await
        .unwrap();
    assert_eq!((v.code, v.valid), (VerifyCode::Valid, true), "{v:?}");
    assert_eq!(v.key_id, Some(id));
    assert_eq!(v.keyspace_id, Some(space.id));
    assert_eq!(v.owner_id.as_deref(), Some("cus_8812"));
    assert_eq!(v.credits.map(|c| c.remaining), Some(1));
    assert_eq!(v.ratelimits[0].remaining, 99);
    let v = gateway
        .verify_key(&VerifyKey::new(token).permissions("invoices:write OR admin"))
        .await
        .unwrap();
    assert_eq!(v.code, VerifyCode::InsufficientPermissions);
    assert_eq!(v.credits.map(|c| c.remaining), Some(1), "nothing spent");
    let v = gateway
        .verify_key(&VerifyKey::new("acme_00000000_not-a-key"))
        .await
        .unwrap();
    assert_eq!((v.code, v.key_id), (VerifyCode::NotFound, None));
    assert_eq!(
        code(
            gateway
                .verify_key(&VerifyKey::new(token).permissions("invoices:read AND"))
                .await
        ),
        ErrorCode::InvalidRequest
    );
    walked.insert("verifyKey");

    let changed = admin
        .update_keyspace_key(
            space.id,
            id,
            &UpdateKeyspaceKey {
                meta: Some(Some(serde_json::json!({"plan": "pro"}))),
                credits: Some(Some(Credits {
                    remaining: 10,
                    refill: Some(Refill {
                        amount: 10,
                        interval: RefillInterval::Month,
                    }),
                })),
                ..UpdateKeyspaceKey::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(changed.credits.map(|c| c.remaining), Some(10));
    let v = gateway.verify_key(&VerifyKey::new(token)).await.unwrap();
    assert_eq!(v.meta, Some(serde_json::json!({"plan": "pro"})));
    assert_eq!(v.credits.map(|c| c.remaining), Some(9));
    walked.insert("updateKeyspaceKey");

    let suspended = admin.suspend_keyspace_key(space.id, id).await.unwrap();
    assert!(suspended.suspended_at.is_some());
    let v = gateway.verify_key(&VerifyKey::new(token)).await.unwrap();
    assert_eq!(v.code, VerifyCode::Suspended);
    walked.insert("suspendKeyspaceKey");
    let resumed = admin.resume_keyspace_key(space.id, id).await.unwrap();
    assert!(resumed.suspended_at.is_none());
    walked.insert("resumeKeyspaceKey");

    let rotation = admin
        .rotate_keyspace_key(
            space.id,
            id,
            &Rotate {
                grace_seconds: Some(60),
            },
        )
        .await
        .unwrap();
    assert_eq!(rotation.key, rotation.successor.key);
    assert_eq!(rotation.successor.resource.rotated_from_key_id, Some(id));
    assert_eq!(rotation.previous.id, id);
    assert!(rotation.previous.expires_at.is_some());
    let successor = rotation.successor.resource.id;
    for presented in [token, rotation.key.expose()] {
        let v = gateway
            .verify_key(&VerifyKey::new(presented))
            .await
            .unwrap();
        assert_eq!(v.code, VerifyCode::Valid, "within the grace period");
    }
    walked.insert("rotateKeyspaceKey");

    // Verifications are counted in the verified key's usage (the log is written in batches).
    for tries in 0.. {
        let usage = admin
            .get_keyspace_key_usage(space.id, id, &UsageQuery::default())
            .await
            .unwrap();
        if usage.data.iter().map(|b| b.requests).sum::<u64>() >= 4 {
            break;
        }
        assert!(
            tries < 100,
            "the key's verifications never showed: {usage:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    walked.insert("getKeyspaceKeyUsage");

    let revoked = admin
        .revoke_keyspace_key(space.id, successor)
        .await
        .unwrap();
    assert!(revoked.revoked_at.is_some());
    let v = gateway
        .verify_key(&VerifyKey::new(rotation.key.expose()))
        .await
        .unwrap();
    assert_eq!(v.code, VerifyCode::Revoked);
    assert_eq!(
        code(admin.resume_keyspace_key(space.id, successor).await),
        ErrorCode::KeyNotActive
    );
    walked.insert("revokeKeyspaceKey");
}
