//! `align keys verify KEY`: what a gateway asks Align about a key its customer presented
//! (`POST /api/v1/keys/verify`, DESIGN §12), from the command line. Through a running server
//! only: named limits and credits are counted there, exactly once per verification.

use std::io::Read as _;

use serde_json::{Value, json};

use crate::client::Api;
use crate::output::{Failure, Out};

/// What `keys verify` asks (its options' doc comments are the `--help` text).
#[derive(Debug, clap::Args)]
pub(crate) struct VerifyArgs {
    /// The presented key (a key space key such as acme_9311c954_…), or - to read it from
    /// standard input (keeps it out of the shell's history).
    #[arg(value_name = "KEY")]
    key: String,
    /// A permission query the key must satisfy, e.g. "invoices:read AND (invoices:write OR admin)".
    #[arg(long, value_name = "QUERY")]
    permissions: Option<String>,
    /// Credits a VALID verification spends of a key with credits (server default 1).
    #[arg(long, value_name = "N")]
    cost: Option<u64>,
    /// A named limit to spend on, with its cost (default 1): requests or tokens:250. Every
    /// limit of the key spends 1 unless named here. Repeatable.
    #[arg(long, value_name = "NAME[:COST]")]
    ratelimit: Vec<String>,
}

impl VerifyArgs {
    /// The presented key: the argument, or standard input's first line for `-`.
    fn key(&self) -> Result<zeroize::Zeroizing<String>, Failure> {
        if self.key != "-" {
            return Ok(zeroize::Zeroizing::new(self.key.clone()));
        }
        let mut text = zeroize::Zeroizing::new(String::new());
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| Failure::usage(format!("cannot read the key from stdin: {e}")))?;
        Ok(zeroize::Zeroizing::new(
            text.lines().next().unwrap_or_default().trim().to_owned(),
        ))
    }

    /// The request body of `POST /api/v1/keys/verify`.
    fn body(&self) -> Result<Value, Failure> {
        let mut body = json!({ "key": self.key()?.as_str() });
        if let Some(q) = &self.permissions {
            body["permissions"] = json!(q);
        }
        if let Some(cost) = self.cost {
            body["credits"] = json!({ "cost": cost });
        }
        if !self.ratelimit.is_empty() {
            let limits: Vec<Value> = self
                .ratelimit
                .iter()
                .map(String::as_str)
                .map(limit_cost)
                .collect();
            body["ratelimits"] = Value::Array(limits);
        }
        Ok(body)
    }
}

/// `name` or `name:cost`: a trailing `:N` (digits) is the cost, so names may hold `:` too.
fn limit_cost(arg: &str) -> Value {
    match arg.rsplit_once(':') {
        Some((name, cost)) if !name.is_empty() && !cost.is_empty() => match cost.parse::<u64>() {
            Ok(cost) => json!({ "name": name, "cost": cost }),
            Err(_) => json!({ "name": arg }),
        },
        _ => json!({ "name": arg }),
    }
}

/// Verifies through `api`: prints the code (the whole answer with `--json`); a key that is
/// not VALID is a [`Failure::NotValid`] (exit 1).
pub(crate) async fn run(api: &Api, args: &VerifyArgs, o: &Out) -> Result<(), Failure> {
    let v = api
        .call("POST", "/api/v1/keys/verify", Some(args.body()?))
        .await?;
    let code = v["code"].as_str().unwrap_or("UNKNOWN").to_owned();
    if o.json {
        o.object(&v)?;
    } else {
        o.line(&code)?;
    }
    if v["valid"] == Value::Bool(true) {
        Ok(())
    } else {
        Err(Failure::NotValid(code))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trailing_number_is_the_cost_and_names_may_hold_colons() {
        assert_eq!(limit_cost("requests"), json!({"name": "requests"}));
        assert_eq!(
            limit_cost("tokens:250"),
            json!({"name": "tokens", "cost": 250})
        );
        assert_eq!(limit_cost("api:read"), json!({"name": "api:read"}));
        assert_eq!(
            limit_cost("api:read:2"),
            json!({"name": "api:read", "cost": 2})
        );
        assert_eq!(limit_cost(":3"), json!({"name": ":3"}));
    }
}
