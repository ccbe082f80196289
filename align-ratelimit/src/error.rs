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
