//! The rules every webhook store follows when it writes, decided here once: the memory,
//! SQLite and PostgreSQL stores read what a rule needs, call it, and write the value it
//! returns.
//!
//! An endpoint's `failing_since` is the start of its current failure run (`None` while it is
//! healthy). The dispatcher disables an endpoint whose run has lasted too long; the stores
//! keep the run by these rules.

use chrono::{DateTime, Utc};

use crate::model::{DeliveryStatus, Next};

/// The status and due time a delivery takes after an attempt.
pub(super) fn next_state(next: Next) -> (DeliveryStatus, Option<DateTime<Utc>>) {
    match next {
        Next::Succeeded => (DeliveryStatus::Succeeded, None),
        Next::RetryAt(at) => (DeliveryStatus::Pending, Some(at)),
        Next::Failed => (DeliveryStatus::Failed, None),
    }
}

/// An endpoint's `failing_since` after an attempt made `at` whose outcome is `next`, given
/// its value `before`: a success ends the failure run; a failure starts one at `at` unless one
/// is already running, whose start it keeps. `T` is a time as the store keeps it.
pub(super) fn failing_since_after_attempt<T>(before: Option<T>, next: Next, at: T) -> Option<T> {
    match next {
        Next::Succeeded => None,
        Next::RetryAt(_) | Next::Failed => Some(before.unwrap_or(at)),
    }
}

/// An endpoint's `failing_since` after its owner updates it, given whether it was enabled,
/// whether it is now, and the value `before`: re-enabling a disabled endpoint starts afresh
/// (no failure run); any other update keeps the run, which only the dispatcher's attempts
/// move.
pub(super) fn failing_since_after_update<T>(
    was_enabled: bool,
    enabled: bool,
    before: Option<T>,
) -> Option<T> {
    if !was_enabled && enabled {
        None
    } else {
        before
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::{failing_since_after_attempt, failing_since_after_update, next_state};
    use crate::model::{DeliveryStatus, Next};

    #[test]
    fn a_success_ends_a_failure_run() {
        assert_eq!(
            failing_since_after_attempt(Some(5), Next::Succeeded, 9),
            None
        );
        assert_eq!(failing_since_after_attempt(None, Next::Succeeded, 9), None);
    }

    #[test]
    fn the_first_failure_starts_a_run_and_later_ones_keep_its_start() {
        let retry = Next::RetryAt(Utc.timestamp_millis_opt(20).single().unwrap_or_default());
        assert_eq!(failing_since_after_attempt(None, retry, 9), Some(9));
        assert_eq!(failing_since_after_attempt(Some(5), retry, 9), Some(5));
        assert_eq!(failing_since_after_attempt(None, Next::Failed, 9), Some(9));
        assert_eq!(
            failing_since_after_attempt(Some(5), Next::Failed, 9),
            Some(5)
        );
    }

    #[test]
    fn re_enabling_a_disabled_endpoint_clears_its_run_and_nothing_else_does() {
        assert_eq!(failing_since_after_update(false, true, Some(5)), None);
        assert_eq!(failing_since_after_update(true, true, Some(5)), Some(5));
        assert_eq!(failing_since_after_update(true, false, Some(5)), Some(5));
        assert_eq!(failing_since_after_update(false, false, Some(5)), Some(5));
        assert_eq!(failing_since_after_update::<i64>(false, true, None), None);
    }

    #[test]
    fn an_attempt_moves_its_delivery_by_its_outcome() {
        let at = Utc.timestamp_millis_opt(20).single().unwrap_or_default();
        assert_eq!(
            next_state(Next::Succeeded),
            (DeliveryStatus::Succeeded, None)
        );
        assert_eq!(
            next_state(Next::RetryAt(at)),
            (DeliveryStatus::Pending, Some(at))
        );
        assert_eq!(next_state(Next::Failed), (DeliveryStatus::Failed, None));
    }
}
