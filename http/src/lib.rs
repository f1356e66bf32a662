//! What every Flotilla HTTP server shares (the API, the ingress).
//!
//! Early answers: a server that answers before it has read the request body
//! (a 401/403 from authorization, a 404, a 413 past a limit, a blob it
//! already has, a guest that never reads its stdin) drops the body. Over
//! HTTP/2 hyper then resets the stream while the answer is on its way, and
//! clients such as curl report "Stream error in the HTTP/2 framing layer"
//! instead of the status; and a client still uploading when a complete
//! answer arrives may not notice it until the connection next speaks. So a
//! body dropped unread is kept ([`Drained`]), and before the answer goes
//! out the server reads and discards what the client still sends
//! ([`Leftover::finish`]), up to [`DRAIN_BYTES`] and for at most
//! [`DRAIN_FOR`]: the client sees an ordinary exchange — its request sent
//! whole, then the answer. Past those bounds the answer goes out at once
//! and the stream is reset only after it (RFC 9113 §8.1's
//! `RST_STREAM(NO_ERROR)`, which h2 sends for a body dropped after a
//! complete answer).

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;

/// At most this much of an unread body is read and discarded before an
/// early answer.
pub const DRAIN_BYTES: usize = 16 << 20;

/// At most this long is spent discarding one body before the answer goes
/// out (a client that sends slowly, or stops, gets it then).
pub const DRAIN_FOR: Duration = Duration::from_secs(10);

/// How long a body past the bounds is kept after the answer, so that the
/// answer is complete before its stream is reset.
const HOLD_AFTER: Duration = Duration::from_secs(2);

/// A request body that, dropped before its end, is kept in its
/// [`Leftover`] for the server to finish.
#[derive(Debug)]
pub struct Drained {
    body: Option<Incoming>,
    ended: bool,
    leftover: Arc<Mutex<Option<Incoming>>>,
}

/// Where a request's unread body goes when its handler drops it.
#[derive(Debug, Default)]
pub struct Leftover(Arc<Mutex<Option<Incoming>>>);

/// Wraps a request's body; call [`Leftover::finish`] once the answer is
/// ready and before it is returned.
pub fn drained(request: hyper::Request<Incoming>) -> (hyper::Request<Drained>, Leftover) {
    let leftover = Leftover::default();
    let slot = leftover.0.clone();
    let request = request.map(|body| Drained {
        body: Some(body),
        ended: false,
        leftover: slot,
    });
    (request, leftover)
}

impl Leftover {
    /// Reads and discards what is left of a body the handler dropped
    /// unread, within the bounds; past them, keeps it a little longer in
    /// the background so the answer is sent first.
    pub async fn finish(self) {
        let body = self.0.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some(mut body) = body else {
            return;
        };
        let ended = tokio::time::timeout(DRAIN_FOR, async {
            let mut left = DRAIN_BYTES;
            loop {
                match body.frame().await {
                    None | Some(Err(_)) => return true,
                    Some(Ok(frame)) => {
                        let size = frame.data_ref().map_or(0, Bytes::len);
                        left = left.saturating_sub(size);
                        if left == 0 {
                            return false;
                        }
                    }
                }
            }
        })
        .await
        .unwrap_or(false);
        if !ended {
            tokio::spawn(async move {
                tokio::time::sleep(HOLD_AFTER).await;
                drop(body);
            });
        }
    }
}

impl Body for Drained {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let Some(body) = this.body.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(body).poll_frame(cx);
        if matches!(polled, Poll::Ready(None | Some(Err(_)))) {
            this.ended = true;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.body.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.body
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}

impl Drop for Drained {
    fn drop(&mut self) {
        let Some(body) = self.body.take() else {
            return;
        };
        if !self.ended && !body.is_end_stream() {
            *self.leftover.lock().unwrap_or_else(|p| p.into_inner()) = Some(body);
        }
    }
}
