//! The two promises every answer keeps, whatever route produced it: a handler that panics
//! answers 500 (never a 2xx, never a dropped connection without a status), and a handler still
//! busy after the request timeout answers 503.
//!
//! The timer is armed only when the handler does not finish on its first poll. A valid-session
//! check in cookie mode never waits for I/O, so it never touches the runtime's timer wheel;
//! before this, a `TimeoutLayer` registered and cancelled a timer for every request (with the
//! router's other layers, about a fifth of a valid-session check in the benchmark profile).

use std::future::{Future, poll_fn};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// How long a handler may take before the request is answered 503 (a stuck IdP or store; their
/// own clients time out earlier).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `answer` to its response, turning a panic into 500 and a handler busy for longer than
/// `limit` into 503.
pub async fn guarded<F>(answer: F, limit: Duration) -> Response
where
    F: Future<Output = Response>,
{
    let mut answer = pin!(answer);
    // The first poll, with no timer.
    let first =
        poll_fn(|cx| Poll::Ready(catch_unwind(AssertUnwindSafe(|| answer.as_mut().poll(cx)))))
            .await;
    match first {
        Ok(Poll::Ready(resp)) => return resp,
        Err(_) => return panicked(),
        Ok(Poll::Pending) => {}
    }
    let mut deadline = pin!(tokio::time::sleep(limit));
    poll_fn(|cx| {
        match catch_unwind(AssertUnwindSafe(|| answer.as_mut().poll(cx))) {
            Ok(Poll::Ready(resp)) => return Poll::Ready(resp),
            Err(_) => return Poll::Ready(panicked()),
            Ok(Poll::Pending) => {}
        }
        match deadline.as_mut().poll(cx) {
            Poll::Ready(()) => {
                tracing::warn!(
                    timeout_s = limit.as_secs(),
                    "request not answered in time; answering 503"
                );
                Poll::Ready(StatusCode::SERVICE_UNAVAILABLE.into_response())
            }
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

/// The payload is not logged: a panic message may quote the request it choked on.
fn panicked() -> Response {
    tracing::error!("request handler panicked; answering 500");
    StatusCode::INTERNAL_SERVER_ERROR.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok() -> Response {
        StatusCode::OK.into_response()
    }

    #[tokio::test]
    async fn a_ready_answer_passes_through() {
        let r = guarded(async { ok() }, Duration::from_millis(1)).await;
        assert_eq!(r.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn a_panic_is_a_500_on_the_first_poll_and_later() {
        let r = guarded(async { panic!("boom") }, REQUEST_TIMEOUT).await;
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let r = guarded(
            async {
                tokio::task::yield_now().await;
                panic!("boom after a wait")
            },
            REQUEST_TIMEOUT,
        )
        .await;
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[tokio::test]
    async fn a_slow_answer_is_a_503_at_the_limit_and_a_prompt_one_is_not() {
        let slow = guarded(
            async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                ok()
            },
            Duration::from_millis(50),
        );
        let started = std::time::Instant::now();
        assert_eq!(slow.await.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(started.elapsed() < Duration::from_secs(10));
        let waits = guarded(
            async {
                tokio::time::sleep(Duration::from_millis(20)).await;
                ok()
            },
            Duration::from_secs(10),
        );
        assert_eq!(waits.await.status(), StatusCode::OK);
    }
}
