//! Events are rate-limited per source — the authenticated caller, not the
//! `source` an event claims — as Kubernetes' EventRateLimit admission
//! plugin does: [`EVENTS_PER_SECOND`] with bursts of [`EVENT_BURST`]. A node
//! in a crash-loop storm cannot flood the store; past the limit its events
//! are refused with 429 (its agent drops them, and repeats fold anyway).

use std::num::NonZeroU32;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::{DefaultKeyedRateLimiter, Quota};

use super::authz::{Caller, Target};
use super::{ApiError, ApiState, Kind};

/// Sustained events per second per source.
pub const EVENTS_PER_SECOND: u32 = 20;
/// Events a source may record at once before the rate applies.
pub const EVENT_BURST: u32 = 100;
/// Sources remembered before idle ones are forgotten.
const MAX_SOURCES: usize = 10_000;

/// The per-source limiter.
pub struct EventRate(DefaultKeyedRateLimiter<String>);

impl Default for EventRate {
    fn default() -> Self {
        let rate = NonZeroU32::new(EVENTS_PER_SECOND).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(EVENT_BURST).unwrap_or(NonZeroU32::MIN);
        Self(DefaultKeyedRateLimiter::keyed(
            Quota::per_second(rate).allow_burst(burst),
        ))
    }
}

impl EventRate {
    /// Whether `source` may record one more event now.
    fn allow(&self, source: String) -> bool {
        if self.0.len() > MAX_SOURCES {
            // Full buckets carry no state: forget them.
            self.0.retain_recent();
        }
        self.0.check_key(&source).is_ok()
    }
}

fn is_event_create(request: &Request) -> bool {
    request.method() == Method::POST
        && matches!(Target::parse(request.uri().path()),
            Target::Object { plural, name: None, .. } if Kind::from_plural(&plural).ok() == Some(Kind::Event))
}

/// Refuses event creates past a source's rate with 429.
pub async fn limit_events(
    State(state): State<Arc<ApiState>>,
    request: Request,
    next: Next,
) -> Response {
    if !is_event_create(&request) {
        return next.run(request).await;
    }
    let source = request
        .extensions()
        .get::<Caller>()
        .map(Caller::name)
        .unwrap_or_default();
    if state.event_rate.allow(source.clone()) {
        return next.run(request).await;
    }
    tracing::debug!("refused an event from {source}: over {EVENTS_PER_SECOND}/s");
    let mut response = ApiError {
        code: StatusCode::TOO_MANY_REQUESTS,
        reason: "TooManyRequests",
        message: format!(
            "{source} records more than {EVENTS_PER_SECOND} events/s (bursts of {EVENT_BURST}): this one was not recorded; events are accepted again as the rate drops"
        ),
    }
    .into_response();
    response
        .headers_mut()
        .insert("retry-after", axum::http::HeaderValue::from_static("1"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_gets_its_burst_then_the_rate_and_others_are_not_affected() {
        let rate = EventRate::default();
        let accepted = (0..EVENT_BURST * 2)
            .filter(|_| rate.allow("system:node:a".into()))
            .count() as u32;
        // The burst, and what the rate refilled meanwhile (a few at most).
        assert!(
            (EVENT_BURST..EVENT_BURST + 5).contains(&accepted),
            "{accepted}"
        );
        assert!(
            rate.allow("system:node:b".into()),
            "another source has its own budget"
        );
    }
}
