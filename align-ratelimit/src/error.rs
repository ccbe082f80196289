//! The crate's one error type.

/// Why a limiter could not be built or could not decide on a request.
///
/// A denied request is not an error: it is a [`Decision`](crate::Decision) with `allowed == false`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The request asks for more units than the limit can ever grant; lower the cost or raise the limit.
    #[error("a request costing {cost} can never be admitted: at most {max} fit in the limit")]
    CostExceedsLimit {
        /// The cost that was asked for.
        cost: u64,
        /// The largest cost this limiter can ever admit.
        max: u64,
    },
    /// The limiter's configuration is unusable; the message names the setting to change.
    #[error("invalid rate-limit configuration: {0}")]
    InvalidConfig(&'static str),
    /// A named limit given to a [`WindowSet`](crate::WindowSet) check is out of range; the
    /// reason says which rule it breaks (limit at least 1, window of whole milliseconds from 1
    /// second to 366 days, cost at most 1,000,000,000, each counter named once per check).
    #[error("named rate limit {name:?} cannot be checked: {reason}")]
    InvalidWindowLimit {
        /// The limit's name.
        name: String,
        /// The rule it breaks.
        reason: &'static str,
    },
    /// The shared store holding the limits (Redis) did not answer or refused the request, so
    /// nothing was decided: check that it is running and reachable, then retry. The store is
    /// named by address only, never with its password.
    #[error("the shared rate-limit store {store} is unavailable: {reason}")]
    Unavailable {
        /// Where the store is (`host:port/db`).
        store: String,
        /// What went wrong, e.g. "connection refused" or "timed out".
        reason: String,
    },
    /// A shared store's address cannot be used; the message says what to change.
    #[error("invalid shared rate-limit store address: {0}")]
    InvalidStore(String),
}

/// Shorthand for results whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Rejects a `cost` above `max`, the check every algorithm makes first.
pub(crate) fn ensure_cost(cost: u64, max: u64) -> Result<()> {
    if cost > max {
        return Err(Error::CostExceedsLimit { cost, max });
    }
    Ok(())
}
