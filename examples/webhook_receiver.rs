//! A webhook receiver that verifies Standard Webhooks signatures and de-duplicates on
//! `webhook-id`, built on hyper and `align-webhooks`' receiver kit.
//!
//! `cargo run -p align-examples --example webhook_receiver` runs a self-contained demo: it
//! starts the receiver on 127.0.0.1, has the `align-webhooks` dispatcher deliver an event to
//! it, re-sends the same delivery (acknowledged as a duplicate) and sends a forgery (refused).
//!
//! `ALIGN_WEBHOOK_SECRET=whsec_… cargo run -p align-examples --example webhook_receiver -- --serve`
//! serves on `ALIGN_RECEIVER_LISTEN` (default `127.0.0.1:8787`) until interrupted.

use std::net::SocketAddr;
use std::sync::Arc;

use align_keys::Environment;
use align_webhooks::{
    Dispatcher, DispatcherConfig, Endpoint, EndpointKey, EndpointSecrets, MemoryDeduplicator,
    MemoryWebhookStore, NewMessage, Receipt, SigningSecret, UrlPolicy, VerificationKey,
    WebhookReceiver, WebhookStore, WebhookVerifier,
};
use bytes::Bytes;
use chrono::Utc;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

type Receiver = WebhookReceiver<WebhookVerifier, MemoryDeduplicator>;

/// Largest body accepted (the platform's payload limit).
const MAX_BODY: usize = 1024 * 1024;

/// The request handler: read the body, verify, de-duplicate, process.
async fn handle(receiver: Arc<Receiver>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let Ok(body) = Limited::new(body, MAX_BODY).collect().await else {
        return reply(StatusCode::PAYLOAD_TOO_LARGE, "body too large");
    };
    let body = body.to_bytes();
    match receiver.receive(&parts.headers, &body).await {
        Ok(Receipt::New(webhook)) => {
            let event: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            println!("receiver: processing {} ({})", webhook.id, event["type"]);
            // Process the event here. If processing fails, call
            // `receiver.processing_failed(&webhook.id)` and answer 5xx so it is retried.
            reply(StatusCode::NO_CONTENT, "")
        }
        Ok(Receipt::Duplicate(webhook)) => {
            println!("receiver: {} already processed, acknowledging", webhook.id);
            reply(StatusCode::OK, "duplicate")
        }
        Err(refused) => {
            println!("receiver: refused ({refused})");
            reply(StatusCode::BAD_REQUEST, "invalid webhook")
        }
    }
}

fn reply(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *resp.status_mut() = status;
    resp
}

/// Serves `receiver` on `listener` until the task is dropped.
async fn serve(listener: tokio::net::TcpListener, receiver: Arc<Receiver>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let receiver = Arc::clone(&receiver);
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let receiver = Arc::clone(&receiver);
                async move { Ok::<_, std::convert::Infallible>(handle(receiver, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::args().any(|a| a == "--serve") {
        let key = std::env::var("ALIGN_WEBHOOK_SECRET")
            .map_err(|_| "set ALIGN_WEBHOOK_SECRET to the endpoint's whsec_ or whpk_ key")?;
        let verifier = WebhookVerifier::with_keys(vec![VerificationKey::parse(&key)?]);
        let addr: SocketAddr = std::env::var("ALIGN_RECEIVER_LISTEN")
            .unwrap_or_else(|_| "127.0.0.1:8787".into())
            .parse()?;
        let listener = tokio::net::TcpListener::bind(addr).await?;
        println!("receiver: listening on http://{}", listener.local_addr()?);
        let receiver = Arc::new(WebhookReceiver::new(
            verifier,
            MemoryDeduplicator::default(),
        ));
        tokio::select! {
            () = serve(listener, receiver) => {}
            _ = tokio::signal::ctrl_c() => println!("receiver: stopping"),
        }
        return Ok(());
    }
    demo().await
}

/// Sender and receiver in one process, talking over 127.0.0.1.
async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    // The endpoint's secret: the sender keeps it in its outbox, the receiver in its config.
    let secret = SigningSecret::generate()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/webhooks", listener.local_addr()?);
    let receiver = Arc::new(WebhookReceiver::new(
        WebhookVerifier::new(secret.clone()),
        MemoryDeduplicator::default(),
    ));
    tokio::spawn(serve(listener, receiver));

    // The sending side: an outbox with one sandbox endpoint, and a dispatcher that may reach
    // 127.0.0.1 (operators allow private targets only for local setups like this one).
    let store = Arc::new(MemoryWebhookStore::new());
    let endpoint = Endpoint::new(
        Environment::Sandbox,
        url.clone(),
        EndpointSecrets::new(EndpointKey::Symmetric(secret)),
    );
    store.create_endpoint(&endpoint).await?;
    let config = DispatcherConfig {
        url_policy: UrlPolicy::new().allow_private_targets(true),
        ..DispatcherConfig::default()
    };
    let dispatcher = Dispatcher::new(store.clone(), config)?;

    let event = NewMessage::new(
        "evt_demo_1",
        "api_key.revoked",
        Environment::Sandbox,
        serde_json::json!({"keyPrefix": "akt_9311c954"}),
    );
    let enqueued = store.enqueue(event, Utc::now()).await?;
    dispatcher.run_once().await?;

    // The same delivery once more (as after a lost acknowledgement): a duplicate.
    let delivery = enqueued.deliveries[0];
    dispatcher.retry(delivery).await?;
    dispatcher.run_once().await?;
    for attempt in store.attempts(delivery).await? {
        println!("sender: attempt answered {:?}", attempt.status);
    }

    // A forgery: right shape, wrong key.
    let forger = SigningSecret::generate()?;
    let now = Utc::now().timestamp();
    let body = r#"{"type":"api_key.revoked","timestamp":"2026-05-14T10:00:00.000Z","data":{}}"#;
    let request = Request::post(&url)
        .header("content-type", "application/json")
        .header("webhook-id", "msg_forged")
        .header("webhook-timestamp", now)
        .header(
            "webhook-signature",
            forger.sign("msg_forged", now, body.as_bytes()),
        )
        .body(Full::new(Bytes::from_static(body.as_bytes())))?;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let response = client.request(request).await?;
    println!("forger: answered {}", response.status());
    Ok(())
}
