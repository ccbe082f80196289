//! [`LimitFuture`]: the answer of an async limiter, ready at once for in-memory ones.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// The future an [`AsyncRateLimiter`](crate::AsyncRateLimiter) or
/// [`AsyncConcurrencyLimiter`](crate::AsyncConcurrencyLimiter) returns.
///
/// In-memory limiters decide synchronously and hand back a ready value without allocating;
/// network back-ends (Redis) box the round trip. Either way the caller just `.await`s it, so a
/// service can hold `Arc<dyn AsyncRateLimiter<K>>` and pick the back-end at start-up.
///
/// ```
/// use align_ratelimit::LimitFuture;
///
/// # tokio_test_block_on(async {
/// assert_eq!(LimitFuture::ready(7).await, 7);
/// assert_eq!(LimitFuture::boxed(async { 8 }).await, 8);
/// # });
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
/// # }
/// ```
#[must_use = "a limiter decides nothing until its future is awaited"]
pub struct LimitFuture<'a, T>(Inner<'a, T>);

enum Inner<'a, T> {
    Ready(Option<T>),
    Boxed(Pin<Box<dyn Future<Output = T> + Send + 'a>>),
}

impl<'a, T> LimitFuture<'a, T> {
    /// A value that is already known: no allocation, ready on the first poll.
    pub fn ready(value: T) -> Self {
        Self(Inner::Ready(Some(value)))
    }

    /// A value still to be computed by `future` (a round trip to a shared store).
    pub fn boxed(future: impl Future<Output = T> + Send + 'a) -> Self {
        Self(Inner::Boxed(Box::pin(future)))
    }
}

// The value is only ever moved out, never pinned in place; the boxed future is pinned on the heap.
impl<T> Unpin for LimitFuture<'_, T> {}

impl<T> Future for LimitFuture<'_, T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        match &mut self.get_mut().0 {
            Inner::Ready(value) => match value.take() {
                Some(v) => Poll::Ready(v),
                // Polled again after completion: a caller bug; never resolve twice.
                None => Poll::Pending,
            },
            Inner::Boxed(future) => future.as_mut().poll(cx),
        }
    }
}

impl<T> std::fmt::Debug for LimitFuture<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &self.0 {
            Inner::Ready(Some(_)) => "ready",
            Inner::Ready(None) => "done",
            Inner::Boxed(_) => "pending",
        };
        f.debug_tuple("LimitFuture").field(&state).finish()
    }
}
