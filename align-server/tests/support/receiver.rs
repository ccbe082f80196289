//! A webhook receiver on loopback: records every request and answers from a script.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::HeaderMap;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Received {
    pub fn header(&self, name: &str) -> String {
        self.headers[name].to_str().unwrap().to_owned()
    }
    pub fn id(&self) -> String {
        self.header("webhook-id")
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
    pub fn event_type(&self) -> String {
        self.json()["type"].as_str().unwrap().to_owned()
    }
    /// Verifies the Standard Webhooks signature with the public `standardwebhooks` crate.
    pub fn verify(&self, secret: &str) -> bool {
        standardwebhooks::Webhook::new(secret)
            .unwrap()
            .verify(&self.body, &self.headers)
            .is_ok()
    }
}

type Script = Box<dyn FnMut(usize) -> u16 + Send>;

#[derive(Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    /// Answers 200 to everything.
    pub async fn ok() -> Self {
        Self::scripted(|_| 200).await
    }

    /// Answers `script(n)` to the n-th request (from 0).
    pub async fn scripted(script: impl FnMut(usize) -> u16 + Send + 'static) -> Self {
        Self::scripted_with_body(script, Bytes::new()).await
    }

    /// Answers `script(n)` with `body` to the n-th request (from 0).
    pub async fn scripted_with_body(
        script: impl FnMut(usize) -> u16 + Send + 'static,
        body: Bytes,
    ) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let log: Arc<Mutex<Vec<Received>>> = Arc::default();
        let script: Arc<Mutex<Script>> = Arc::new(Mutex::new(Box::new(script)));
        let server_log = Arc::clone(&log);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let log = Arc::clone(&server_log);
                let script = Arc::clone(&script);
                let reply = body.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let log = Arc::clone(&log);
                        let script = Arc::clone(&script);
                        let reply = reply.clone();
                        async move {
                            let headers = req.headers().clone();
                            let body = req.into_body().collect().await?.to_bytes();
                            let status = {
                                let mut log = log.lock().unwrap();
                                let n = log.len();
                                log.push(Received { headers, body });
                                (script.lock().unwrap())(n)
                            };
                            Ok::<_, hyper::Error>(
                                http::Response::builder()
                                    .status(status)
                                    .body(Full::new(reply))
                                    .unwrap(),
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { addr, log }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    pub fn received(&self) -> Vec<Received> {
        self.log.lock().unwrap().clone()
    }

    /// Waits until `done` holds for what was received, or panics after `timeout`.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        what: &str,
        done: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        let start = Instant::now();
        loop {
            let got = self.received();
            if done(&got) {
                return got;
            }
            assert!(
                start.elapsed() < timeout,
                "timed out waiting for {what}; got {:?}",
                got.iter().map(Received::event_type).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for a delivery of `event_type`.
    pub async fn wait_for_type(&self, event_type: &str) -> Received {
        let got = self
            .wait_for(Duration::from_secs(10), event_type, |r| {
                r.iter().any(|x| x.event_type() == event_type)
            })
            .await;
        got.into_iter()
            .find(|x| x.event_type() == event_type)
            .unwrap()
    }
}
