//! Long-lived answers (watches, log follows) authorized again while they
//! run. A request is authorized once, when it arrives; a watch may then
//! stream for hours. Without a second look, deleting a token or the
//! RoleBinding that let it watch would take nothing away from a stream
//! already open. So the authentication middleware hands such requests a
//! [`Recheck`]: the same credential and request judged again — the token
//! looked up again (deleted or expired → 401), the grants read again
//! (gone → 403, narrowed → a narrower view) — at most every
//! [`RECHECK_EVERY`], and the stream ends with the answer when it refuses
//! (a store that does not answer once ends nothing).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use futures_util::{Stream, StreamExt};

use super::authz::View;
use super::ApiError;

/// How long a revoked credential or grant may keep a stream open.
pub const RECHECK_EVERY: Duration = Duration::from_secs(5);

/// The request's authorization, to run again.
#[derive(Clone)]
pub struct Recheck(Arc<dyn Fn() -> Result<View, ApiError> + Send + Sync>);

impl Recheck {
    /// Wraps a check that returns the view the caller may have now.
    pub fn new(check: impl Fn() -> Result<View, ApiError> + Send + Sync + 'static) -> Self {
        Self(Arc::new(check))
    }

    /// The view the caller may have now, or why it may have none.
    pub fn view(&self) -> Result<View, ApiError> {
        (self.0)()
    }
}

/// Whether a recheck's error takes the caller's right away (401, 403), as
/// opposed to a store that did not answer this time.
pub fn refuses(e: &ApiError) -> bool {
    matches!(e.code.as_u16(), 401 | 403)
}

/// `body` (a log follow's bytes) until the caller may no longer read it:
/// then one last line says why, and the stream ends.
pub fn follow<E: Send + 'static>(
    body: impl Stream<Item = Result<Bytes, E>> + Send + Unpin + 'static,
    recheck: Recheck,
) -> impl Stream<Item = Result<Bytes, E>> + Send {
    let ticks =
        tokio::time::interval_at(tokio::time::Instant::now() + RECHECK_EVERY, RECHECK_EVERY);
    futures_util::stream::unfold(Some((body, ticks, recheck)), |state| async move {
        let (mut body, mut ticks, recheck) = state?;
        loop {
            tokio::select! {
                chunk = body.next() => return chunk.map(|c| (c, Some((body, ticks, recheck)))),
                _ = ticks.tick() => match recheck.view() {
                    Err(e) if refuses(&e) => {
                        let line = format!("\nflotilla: the log stream ended: {}\n", e.message);
                        return Some((Ok(Bytes::from(line)), None));
                    }
                    Err(e) => tracing::warn!("could not recheck a log follow: {}", e.message),
                    Ok(_) => {}
                },
            }
        }
    })
}
