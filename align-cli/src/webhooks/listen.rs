//! `align webhooks listen`: a local receiver for trying webhooks out. It verifies every
//! delivery with `align-webhooks`' receiver kit, de-duplicates on `webhook-id`, and prints each
//! new event to stdout.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use align_webhooks::{
    Error, MemoryDeduplicator, Receipt, VerifiedWebhook, WebhookReceiver, WebhookVerifier,
};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

use crate::output::{Failure, Out};

type Receiver = WebhookReceiver<WebhookVerifier, MemoryDeduplicator>;

/// Largest body accepted: the platform's payload limit.
const MAX_BODY: usize = 1024 * 1024;

/// What `webhooks listen` was given.
pub(crate) struct ListenArgs {
    pub(crate) listen: SocketAddr,
    pub(crate) secret_file: Option<PathBuf>,
}

/// Serves until SIGINT or SIGTERM.
pub(crate) async fn listen(a: &ListenArgs, out: &Out) -> Result<(), Failure> {
    let keys = super::verify::verification_keys(a.secret_file.as_deref())?;
    let receiver = Arc::new(WebhookReceiver::new(
        WebhookVerifier::with_keys(keys),
        MemoryDeduplicator::default(),
    ));
    let listener = tokio::net::TcpListener::bind(a.listen)
        .await
        .map_err(|e| Failure::usage(format!("cannot listen on {}: {e}", a.listen)))?;
    let addr = listener.local_addr()?;
    eprintln!("listening on http://{addr}");
    let json = out.json;
    tokio::select! {
        () = serve(listener, receiver, json) => {}
        () = align_server::shutdown_signal() => eprintln!("stopped"),
    }
    Ok(())
}

async fn serve(listener: tokio::net::TcpListener, receiver: Arc<Receiver>, json: bool) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors and the like: wait a little rather than spin.
                eprintln!("accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let receiver = Arc::clone(&receiver);
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let receiver = Arc::clone(&receiver);
                async move { Ok::<_, Infallible>(handle(&receiver, req, json).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// Verify, de-duplicate, print. The answers follow the receiver rules in docs/webhooks.md:
/// 2xx for new and duplicate deliveries, 400 for malformed ones, 401 for a bad signature or
/// a timestamp out of tolerance.
async fn handle(receiver: &Receiver, req: Request<Incoming>, json: bool) -> Response<Full<Bytes>> {
    if req.method() != Method::POST {
        return reply(StatusCode::METHOD_NOT_ALLOWED, "send webhooks with POST");
    }
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return reply(StatusCode::PAYLOAD_TOO_LARGE, "body too large"),
    };
    match receiver.receive(&parts.headers, &body).await {
        Ok(Receipt::New(webhook)) => {
            if print_event(&webhook, &body, json).is_err() {
                // Nobody saw it: let the sender retry it later.
                let _ = receiver.processing_failed(&webhook.id).await;
                return reply(StatusCode::SERVICE_UNAVAILABLE, "cannot print the event");
            }
            reply(StatusCode::NO_CONTENT, "")
        }
        Ok(Receipt::Duplicate(webhook)) => {
            eprintln!("duplicate {} acknowledged, not printed again", webhook.id);
            reply(StatusCode::OK, "duplicate")
        }
        Err(e) => {
            let status = match e {
                Error::MissingHeader(_) | Error::InvalidHeader(_) => StatusCode::BAD_REQUEST,
                Error::InvalidSignature | Error::TimestampTooOld | Error::TimestampTooNew => {
                    StatusCode::UNAUTHORIZED
                }
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            // The reasons name headers and checks, never secret material.
            eprintln!("refused a delivery ({}): {e}", status.as_u16());
            reply(status, "invalid webhook")
        }
    }
}

/// One line on stdout: `TYPE  ID  TIMESTAMP  DATA`, or a JSON object with `--json`.
fn print_event(webhook: &VerifiedWebhook, body: &[u8], json: bool) -> std::io::Result<()> {
    use std::io::Write;
    let event: Value = serde_json::from_slice(body)
        .unwrap_or_else(|_| json!({ "data": String::from_utf8_lossy(body) }));
    let line = event_line(webhook, &event, json);
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}")?;
    stdout.flush()
}

fn event_line(webhook: &VerifiedWebhook, event: &Value, json: bool) -> String {
    let kind = event["type"].as_str().unwrap_or("-");
    let timestamp = event["timestamp"].as_str().map_or_else(
        || {
            chrono::DateTime::from_timestamp(webhook.timestamp, 0)
                .map_or_else(|| webhook.timestamp.to_string(), |t| t.to_rfc3339())
        },
        str::to_owned,
    );
    if json {
        json!({
            "id": webhook.id,
            "type": event["type"],
            "timestamp": timestamp,
            "webhookTimestamp": webhook.timestamp,
            "data": event["data"],
        })
        .to_string()
    } else {
        format!("{kind}  {}  {timestamp}  {}", webhook.id, event["data"])
    }
}

fn reply(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *resp.status_mut() = status;
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_prints_as_one_line_either_way() {
        let w = VerifiedWebhook {
            id: "msg_1".into(),
            timestamp: 1_614_265_330,
        };
        let e = json!({"type": "api_key.revoked", "timestamp": "2026-05-14T10:00:00.000Z",
                       "data": {"keyPrefix": "ako_9311c954"}});
        assert_eq!(
            event_line(&w, &e, false),
            r#"api_key.revoked  msg_1  2026-05-14T10:00:00.000Z  {"keyPrefix":"ako_9311c954"}"#
        );
        let v: Value = serde_json::from_str(&event_line(&w, &e, true)).unwrap_or_default();
        assert_eq!(v["id"], "msg_1");
        assert_eq!(v["type"], "api_key.revoked");
        assert_eq!(v["webhookTimestamp"], 1_614_265_330);
        assert_eq!(v["data"]["keyPrefix"], "ako_9311c954");
    }
}
