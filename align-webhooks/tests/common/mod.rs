//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use align_keys::Environment;
use align_webhooks::{Endpoint, EndpointKey, EndpointSecrets, SigningSecret};

pub fn endpoint(environment: Environment, url: &str) -> Endpoint {
    let secrets = EndpointSecrets::new(EndpointKey::Symmetric(SigningSecret::generate().unwrap()));
    Endpoint::new(environment, url.to_owned(), secrets)
}
