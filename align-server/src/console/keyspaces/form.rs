//! The mint form of a key space's page, and what it sends as a `KeyspaceKeyRequest` (the
//! API's body, field for field; the checks on values are the library's).

use align_keys::Environment;
use align_keys::keyspace::{Credits, Keyspace, NamedLimit, Refill, RefillInterval};
use chrono::{DateTime, NaiveDateTime, Utc};
use maud::{Markup, html};

use super::Ctx;
use crate::error::ApiError;
use crate::routes::keyspaces::KeyspaceKeyRequest;

/// The "Mint a key" form; after a refused mint (`error`), what was typed is kept.
pub(super) fn mint_form(ctx: &Ctx<'_>, ks: &Keyspace, error: Option<&ApiError>) -> Markup {
    let typed = |name: &str| error.and(ctx.field(name)).unwrap_or("").to_owned();
    let ticked = |p: &str| error.is_some() && ctx.fields("permissions").any(|t| t == p);
    let interval = typed("refillInterval");
    let environment = error
        .and(ctx.field("environment"))
        .and_then(Environment::from_name)
        .unwrap_or(ctx.env());
    html! {
        h2 { "Mint a key" }
        @if let Some(e) = error {
            p class="error" data-testid="error" { (e.message) }
        }
        form id="mint-key" class="stacked" method="post" action={ "/console/keyspaces/" (ks.id) "/keys" } {
            (ctx.hidden_fields())
            label { "Name " input name="name" required maxlength="200" placeholder="cus_8812 production" value=(typed("name")); }
            label { "Owner id (optional) " input name="ownerId" maxlength="256" placeholder="your customer's id" value=(typed("ownerId")); }
            fieldset data-testid="mint-permissions" {
                legend { "Permissions" }
                @for p in &ks.permissions {
                    label class="check" { input type="checkbox" name="permissions" value=(p) checked[ticked(p)]; " " code { (p) } }
                }
                @if ks.permissions.is_empty() {
                    p class="hint" { "This key space declares no permissions." }
                }
            }
            label { "Expires (optional, UTC) " input type="datetime-local" name="expiresAt" value=(typed("expiresAt")); }
            fieldset {
                legend { "Credits (optional; empty: unlimited uses)" }
                label { "Remaining " input type="number" name="creditsRemaining" min="0" value=(typed("creditsRemaining")); }
                label { "Refill to " input type="number" name="refillAmount" min="0" value=(typed("refillAmount")); }
                label {
                    "Refill every "
                    select name="refillInterval" {
                        option value="" { "never" }
                        @for i in [RefillInterval::Day, RefillInterval::Month] {
                            option value=(i) selected[interval == i.as_str()] { (i) }
                        }
                    }
                }
            }
            label {
                "Named limits (optional, one per line: name limit durationSeconds) "
                textarea name="ratelimits" rows="3" placeholder="requests 100 60" { (typed("ratelimits")) }
            }
            label {
                "Environment "
                select name="environment" {
                    @for env in [Environment::Live, Environment::Sandbox] {
                        option value=(env) selected[env == environment] { (env) }
                    }
                }
            }
            p class="hint" { "The key is shown once, right after you mint it. Only its hash is kept." }
            button type="submit" class="primary" data-testid="mint-key-submit" { "Mint key" }
        }
    }
}

/// The mint form as the API's request; a value that is not what its field asks for is `400`.
pub(super) fn key_request(
    ctx: &Ctx<'_>,
    now: DateTime<Utc>,
) -> Result<KeyspaceKeyRequest, ApiError> {
    let text = |name: &str| ctx.field(name).map(str::trim).filter(|v| !v.is_empty());
    let environment = text("environment")
        .map(|e| {
            Environment::from_name(e)
                .ok_or_else(|| ApiError::invalid_request("environment must be live or sandbox"))
        })
        .transpose()?
        .unwrap_or(ctx.env());
    Ok(KeyspaceKeyRequest {
        name: ctx.field("name").unwrap_or("").trim().to_owned(),
        owner_id: text("ownerId").map(str::to_owned),
        meta: None,
        permissions: ctx.fields("permissions").map(str::to_owned).collect(),
        expires_at: text("expiresAt").map(expiry).transpose()?,
        credits: credits(
            whole(text("creditsRemaining"), "credits remaining")?,
            whole(text("refillAmount"), "the refill amount")?,
            text("refillInterval"),
            now,
        )?,
        ratelimits: limits(ctx.field("ratelimits").unwrap_or(""))?,
        environment: Some(environment),
    })
}

fn whole(value: Option<&str>, what: &str) -> Result<Option<u64>, ApiError> {
    value
        .map(|v| {
            v.parse()
                .map_err(|_| ApiError::invalid_request(format!("{what} must be a whole number")))
        })
        .transpose()
}

/// A date and time in UTC as a `datetime-local` input sends it, or RFC 3339.
fn expiry(value: &str) -> Result<DateTime<Utc>, ApiError> {
    ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(value, f).ok())
        .map(|t| t.and_utc())
        .or_else(|| {
            DateTime::parse_from_rfc3339(value)
                .ok()
                .map(|t| t.with_timezone(&Utc))
        })
        .ok_or_else(|| {
            ApiError::invalid_request(
                "the expiry must be a date and time in UTC, such as 2030-01-31T12:00",
            )
        })
}

fn credits(
    remaining: Option<u64>,
    amount: Option<u64>,
    interval: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Option<Credits>, ApiError> {
    let refill = match (amount, interval) {
        (None, None) => None,
        (Some(amount), Some(i)) => Some(Refill {
            amount,
            interval: RefillInterval::from_name(i).ok_or_else(|| {
                ApiError::invalid_request("the refill interval must be day or month")
            })?,
        }),
        (Some(_), None) => {
            return Err(ApiError::invalid_request(
                "a refill needs an interval (day or month)",
            ));
        }
        (None, Some(_)) => {
            return Err(ApiError::invalid_request(
                "a refill needs the amount it refills to",
            ));
        }
    };
    match (remaining, refill) {
        (None, None) => Ok(None),
        (None, Some(_)) => Err(ApiError::invalid_request(
            "a refill needs the credits a key starts with (remaining)",
        )),
        (Some(remaining), refill) => Ok(Some(Credits::new(remaining, refill, now))),
    }
}

/// Named limits, one per line: `name limit durationSeconds`.
fn limits(text: &str) -> Result<Vec<NamedLimit>, ApiError> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            let bad = || {
                ApiError::invalid_request(format!(
                    "named limits, line {}: write `name limit durationSeconds`, such as `requests 100 60`",
                    i + 1
                ))
            };
            let parts: Vec<&str> = line.split_whitespace().collect();
            let [name, limit, duration] = parts.as_slice() else {
                return Err(bad());
            };
            Ok(NamedLimit {
                name: (*name).to_owned(),
                limit: limit.parse().map_err(|_| bad())?,
                duration_seconds: duration.parse().map_err(|_| bad())?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn named_limits_are_read_line_by_line_and_a_bad_line_is_named() {
        let got = limits("requests 100 60\n\n  tokens 5000 86400  \n").unwrap();
        assert_eq!(
            got,
            [
                NamedLimit {
                    name: "requests".into(),
                    limit: 100,
                    duration_seconds: 60
                },
                NamedLimit {
                    name: "tokens".into(),
                    limit: 5000,
                    duration_seconds: 86400
                },
            ]
        );
        let e = limits("requests 100 60\nrequests 100").unwrap_err();
        assert!(e.message.contains("line 2"), "{}", e.message);
        assert!(limits("requests ten 60").is_err());
    }

    #[test]
    fn credits_need_a_start_and_a_refill_needs_both_halves() {
        let now = Utc::now();
        assert_eq!(credits(None, None, None, now).unwrap(), None);
        let c = credits(Some(10), Some(50), Some("day"), now)
            .unwrap()
            .unwrap();
        assert_eq!(c.remaining, 10);
        assert_eq!(
            c.refill,
            Some(Refill {
                amount: 50,
                interval: RefillInterval::Day
            })
        );
        assert!(credits(None, Some(50), Some("day"), now).is_err());
        assert!(credits(Some(1), Some(50), None, now).is_err());
        assert!(credits(Some(1), None, Some("day"), now).is_err());
        assert!(credits(Some(1), Some(5), Some("week"), now).is_err());
    }

    #[test]
    fn an_expiry_is_read_as_utc() {
        let t = expiry("2030-01-31T12:00").unwrap();
        assert_eq!(t.to_rfc3339(), "2030-01-31T12:00:00+00:00");
        assert_eq!(
            expiry("2030-01-31T13:00:00+01:00").unwrap(),
            expiry("2030-01-31T12:00:00").unwrap()
        );
        assert!(expiry("next tuesday").is_err());
    }
}
