//! What serving one request takes and gives, whatever the kind of
//! handler: the [`HandlerSpec`], the [`Served`] response, and the answers
//! Flotilla makes itself (a run that failed, a plain text).

use bytes::Bytes;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full};

use super::outcome::{ExitReason, Outcome};
use super::run::Limits;

/// The body of a response from a handler (streamed from the guest, or whole).
pub type ResponseBody = UnsyncBoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// What one request needs besides the request itself.
#[derive(Clone, Default)]
pub struct HandlerSpec {
    /// Environment variables (a WAGI module also gets the CGI variables).
    pub env: Vec<(String, String)>,
    /// Directories the guest sees (read-only `files` mounts).
    pub dirs: Vec<super::Preopen>,
    /// Memory, CPU and time limits of one request.
    pub limits: Limits,
    /// Where the guest's stderr (and a component's stdout) goes.
    pub log: Option<super::LogWriter>,
    /// Its host-api capabilities: what it was granted, its
    /// `wasi:config/store` values, where outgoing requests go (none:
    /// refused).
    pub host: flotilla_host_api::HostCtx,
    /// Where every request's CPU time and memory are added up (the
    /// replica's metrics), if anywhere.
    pub usage: Option<std::sync::Arc<super::Usage>>,
}

/// A response, and how the guest's run ended when it did not end well.
pub struct Served {
    /// What to send back.
    pub response: http::Response<ResponseBody>,
    /// Why the guest failed (trap, OOMKilled, DeadlineExceeded…), if it did.
    pub failure: Option<Outcome>,
}

/// A whole-body response.
pub fn plain_response(status: u16, text: String) -> http::Response<ResponseBody> {
    let mut response = http::Response::new(
        Full::new(Bytes::from(text))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = http::StatusCode::from_u16(status).unwrap_or_default();
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// The error response for a run that ended badly.
pub(super) fn failed(outcome: Outcome, name: &str) -> Served {
    let (status, what) = match outcome.reason {
        ExitReason::DeadlineExceeded => (504, "ran past its deadline"),
        ExitReason::OomKilled => (500, "ran out of memory (its memory limit refused a growth)"),
        ExitReason::Trap => (500, "trapped"),
        ExitReason::Error | ExitReason::Completed => (500, "failed"),
    };
    let detail = outcome
        .trap
        .clone()
        .or_else(|| outcome.message.clone())
        .unwrap_or_default();
    let text = format!("handler {name} {what}: {} {detail}\n", outcome.reason);
    Served {
        response: plain_response(status, text),
        failure: Some(outcome),
    }
}
