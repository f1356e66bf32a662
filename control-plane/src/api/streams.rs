//! Long-lived responses — watches and followed logs — are capped per client
//! (who it authenticated as, and the address it comes from), so one client cannot
//! hold every connection and task the server has. The count is held by the
//! response body: it drops when the stream ends or the client goes away.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::Digest;

use flotilla_trust::connections::{Held, PerKey};

use super::authz::Caller;
use super::{ApiError, ApiState};

/// Streams one client may have open at once.
pub const MAX_STREAMS_PER_CLIENT: usize = 100;

/// Open streams per client.
#[derive(Debug)]
pub struct StreamLimiter(PerKey<String>);

impl Default for StreamLimiter {
    fn default() -> Self {
        Self(PerKey::new(MAX_STREAMS_PER_CLIENT))
    }
}

impl StreamLimiter {
    fn hold(&self, client: &str) -> Option<Held<String>> {
        self.0.hold(client.to_string())
    }

    /// Streams open now, all clients together.
    pub fn open(&self) -> usize {
        self.0.total()
    }
}

/// Whether a request asks for a long-lived response: its query decoded the
/// way the handlers decode it (`%77atch=true` is a watch too).
pub(super) fn is_stream(request: &Request) -> bool {
    let flag = |k: &str| super::request_flag(request, k);
    flag("watch") || (request.uri().path().ends_with("/log") && flag("follow"))
}

/// Counts watches and log follows per client; past the cap, 429.
pub async fn limit_streams(
    State(state): State<Arc<ApiState>>,
    request: Request,
    next: Next,
) -> Response {
    if !is_stream(&request) {
        return next.run(request).await;
    }
    // The credential as authentication read it: the token (hashed: this
    // map is not a token store) or the node, so spacing or an extra header
    // cannot make one client look like many.
    let token = super::auth::bearer(&request)
        .map(|t| hex::encode(&sha2::Sha256::digest(t.as_bytes())[..8]))
        .or_else(|| request.extensions().get::<Caller>().map(Caller::name))
        .unwrap_or_default();
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_default();
    let client = format!("{peer}/{token}");
    let Some(held) = state.streams.hold(&client) else {
        tracing::warn!("refused a stream: client {peer} has {MAX_STREAMS_PER_CLIENT} open");
        return ApiError {
            code: StatusCode::TOO_MANY_REQUESTS,
            reason: "TooManyRequests",
            message: format!(
                "this client has {MAX_STREAMS_PER_CLIENT} watches and log follows open already (the most one client may hold): close some and retry"
            ),
        }
        .into_response();
    };
    let response = next.run(request).await;
    response.map(|body| Body::new(HeldBody { body, _held: held }))
}

/// A response body that keeps its stream counted while it lives.
struct HeldBody {
    body: Body,
    _held: Held<String>,
}

impl http_body::Body for HeldBody {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
