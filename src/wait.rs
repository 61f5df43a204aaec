//! A runtime-free way to wait for the first of two futures, for the
//! background loops (the host spawns them on its own runtime and passes its
//! timer, so the crate needs none).

use core::future::{Future, poll_fn};
use core::pin::pin;
use core::task::Poll;

/// Which future finished first.
pub(crate) enum First<A, B> {
    /// The first argument.
    Left(A),
    /// The second argument.
    Right(B),
}

/// Runs both futures until one finishes (the first argument wins a tie);
/// the other is dropped.
pub(crate) async fn first<A: Future, B: Future>(a: A, b: B) -> First<A::Output, B::Output> {
    let mut a = pin!(a);
    let mut b = pin!(b);
    poll_fn(|cx| {
        if let Poll::Ready(x) = a.as_mut().poll(cx) {
            return Poll::Ready(First::Left(x));
        }
        if let Poll::Ready(y) = b.as_mut().poll(cx) {
            return Poll::Ready(First::Right(y));
        }
        Poll::Pending
    })
    .await
}
