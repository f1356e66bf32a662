//! Authentication: who a request comes from — a node by the certificate the
//! cluster CA issued it, anyone else by a bearer token — then
//! [`authz`](super::authz) decides what it may do. Every route but
//! `/healthz` and `/cacerts` needs one or the other.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use flotilla_trust::names::{Peer, Presented};
use http_body_util::BodyExt;

use super::authz::{self, Caller, Decision, Target};
use super::tokens::Bearer;
use super::{ApiError, ApiState, MAX_OBJECT_BYTES};

/// What a bearer token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Everything.
    Admin,
    /// Read everything but tokens.
    View,
    /// Get a node certificate, nothing else.
    Join,
}

impl Role {
    /// The caller it makes.
    pub(super) fn caller(self) -> Caller {
        match self {
            Role::Admin => Caller::Admin,
            Role::View => Caller::View,
            Role::Join => Caller::Joiner,
        }
    }
}

/// The bearer token of a request, if any. A join token's CA hash
/// (`FL10<hash>::`) is not part of the secret.
pub fn bearer(request: &Request) -> Option<&str> {
    let token = request
        .headers()
        .get(AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")?
        .trim();
    Some(token.rsplit_once("::").map_or(token, |(_, secret)| secret))
}

/// Who the request comes from: 401 if nobody known.
fn authenticate(state: &ApiState, request: &Request) -> Result<Bearer, ApiError> {
    if let Some(token) = bearer(request) {
        return state.tokens.bearer_of(state.store.as_ref(), token)?.ok_or_else(|| {
            tracing::warn!("rejected a request to {} with an unknown token", request.uri().path());
            ApiError::unauthorized("the bearer token is not valid for this server: it is unknown, expired or revoked (check the token in your client config; `flotilla token list` shows the tokens)")
        });
    }
    match request.extensions().get::<Option<Presented>>().cloned().flatten() {
        Some(Presented {
            peer: Peer::Node(node),
            serial,
        }) => {
            refuse_revoked(state, &node, &serial)?;
            Ok(Bearer {
                caller: Caller::Node(node),
                id: None,
            })
        }
        _ => Err(ApiError::unauthorized(
            "this server requires a bearer token (Authorization: Bearer <token>) or a node certificate; the flotilla CLI reads the token from its client config",
        )),
    }
}

/// 401 for a node certificate that was revoked (it is still within its
/// validity, and the CA's signature on it is good: only the record says).
fn refuse_revoked(state: &ApiState, node: &str, serial: &str) -> Result<(), ApiError> {
    if crate::node_certificates::is_revoked(state.store.as_ref(), serial)? {
        tracing::warn!("refused node {node}'s certificate {serial}: it was revoked");
        return Err(ApiError::unauthorized(format!(
            "the certificate of node {node} (serial {serial}) was revoked: this node may not use the cluster any more; to bring the machine back, join it again with a join token (under another name, or after `flotilla delete node {node}`)"
        )));
    }
    Ok(())
}

/// Authenticates and authorizes every request but the public ones; passes
/// the [`Caller`] and the list [`View`](authz::View) on to the handlers,
/// and who it was to the audit log (in the response's extensions).
pub async fn require_credential(
    State(state): State<Arc<ApiState>>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path().to_string();
    if Target::parse(&path) == Target::Public {
        return next.run(request).await;
    }
    let bearer = match authenticate(&state, &request) {
        Ok(bearer) => bearer,
        Err(e) => return e.into_response(),
    };
    let who = super::audit::Who::of(&bearer.caller, bearer.id.as_deref());
    let mut request = request;
    request
        .extensions_mut()
        .insert(super::tokens::TokenId(bearer.id));
    let mut response = authorized(&state, request, next, bearer.caller, &path).await;
    response.extensions_mut().insert(who);
    response
}

/// The request's authentication and authorization, to run again while
/// its stream lasts: a token is looked up again (a deleted or expired one
/// ends it), a node's certificate is checked against the revocations
/// again (a revoked node's watches end).
fn recheck(
    state: &Arc<ApiState>,
    request: &Request,
    caller: &Caller,
    path: &str,
    watch: bool,
) -> super::recheck::Recheck {
    let state = state.clone();
    let secret = bearer(request).map(str::to_string);
    let certificate = request
        .extensions()
        .get::<Option<Presented>>()
        .cloned()
        .flatten();
    let (method, path, caller) = (request.method().clone(), path.to_string(), caller.clone());
    super::recheck::Recheck::new(move || {
        let store = state.store.as_ref();
        if let (
            None,
            Some(Presented {
                peer: Peer::Node(node),
                serial,
            }),
        ) = (&secret, &certificate)
        {
            refuse_revoked(&state, node, serial)?;
        }
        let caller = match &secret {
            Some(secret) => state.tokens.bearer_of(store, secret)?.ok_or_else(|| {
                ApiError::unauthorized(
                    "the token was deleted or has expired since the stream opened (`flotilla token list` shows the tokens)",
                )
            })?.caller,
            None => caller.clone(),
        };
        match authz::authorize(&caller, &method, &path, watch, store)? {
            Decision::Allow(view) => Ok(view),
            Decision::AllowIfBody(_) => Ok(authz::View::Full),
        }
    })
}

/// Whether a request asks to watch (`?watch=true`).
pub(super) fn is_watch(request: &Request) -> bool {
    super::request_flag(request, "watch")
}

async fn authorized(
    state: &Arc<ApiState>,
    mut request: Request,
    next: Next,
    caller: Caller,
    path: &str,
) -> Response {
    let watch = is_watch(&request);
    if super::streams::is_stream(&request) {
        let recheck = recheck(state, &request, &caller, path, watch);
        request.extensions_mut().insert(recheck);
    }
    let decision =
        match authz::authorize(&caller, request.method(), path, watch, state.store.as_ref()) {
            Ok(decision) => decision,
            Err(e) => return e.into_response(),
        };
    let view = match decision {
        Decision::Allow(view) => view,
        Decision::AllowIfBody(check) => {
            let (parts, body) = request.into_parts();
            // As much as the handler itself takes.
            let limit = match check {
                authz::BodyCheck::BucketBatch { .. } => super::buckets::MAX_BATCH_BODY_BYTES,
                _ => MAX_OBJECT_BYTES,
            };
            let bytes = match http_body_util::Limited::new(body, limit).collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                    return ApiError::too_large("the body", limit as u64).into_response()
                }
                Err(e) => {
                    return ApiError::bad_request(format!("cannot read the request body: {e}"))
                        .into_response()
                }
            };
            let value: serde_json::Value = match serde_json::from_slice(&bytes) {
                Ok(value) => value,
                Err(e) => {
                    return ApiError::bad_request(format!("the body is not valid JSON: {e}"))
                        .into_response()
                }
            };
            if let Err(e) = authz::check_body(&check, &value, state.store.as_ref()) {
                tracing::warn!("refused {path} to {}: {}", caller.name(), e.message);
                return e.into_response();
            }
            request = Request::from_parts(parts, Body::from(bytes));
            authz::View::Full
        }
    };
    request.extensions_mut().insert(caller);
    request.extensions_mut().insert(view);
    next.run(request).await
}
