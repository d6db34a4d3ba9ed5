//! Counts requests per route, method and status for `GET /metrics`.
//!
//! A tower layer rather than `middleware::from_fn`: that one clones the wrapped route and
//! boxes a future on every request, and this runs on every put.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::response::Response;
use tower::{Layer, Service};

use super::AppState;

/// Wraps each route in [`Observe`].
#[derive(Clone)]
pub(super) struct ObserveLayer(pub AppState);

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;
    fn layer(&self, inner: S) -> Observe<S> {
        Observe {
            inner,
            state: self.0.clone(),
        }
    }
}

/// Records each response's status under the route that matched (`unmatched` for none).
#[derive(Clone)]
pub(super) struct Observe<S> {
    inner: S,
    state: AppState,
}

impl<S> Service<Request> for Observe<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Observed<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let route = req.extensions().get::<MatchedPath>().cloned();
        let method = req.method().clone();
        Observed {
            inner: self.inner.call(req),
            seen: Some((self.state.clone(), route, method)),
        }
    }
}

pin_project_lite::pin_project! {
    /// The wrapped route's response future; counts the response when it is ready.
    pub(super) struct Observed<F> {
        #[pin]
        inner: F,
        seen: Option<(AppState, Option<MatchedPath>, Method)>,
    }
}

impl<F: Future<Output = Result<Response, Infallible>>> Future for Observed<F> {
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Ok(resp) = std::task::ready!(this.inner.poll(cx));
        if let Some((state, route, method)) = this.seen.take() {
            let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
            state
                .inner
                .metrics
                .http_request(&method, route, resp.status().as_u16());
        }
        Poll::Ready(Ok(resp))
    }
}
