//! `GET /cacerts` (no credential: what a joining agent checks against its
//! token's hash) and `POST /certificates/node` (a join token, or a node's
//! own certificate to renew it): signs a node's certificate request.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use flotilla_spec::meta::parse_rfc3339;
use serde::{Deserialize, Serialize};

use super::authz::Caller;
use super::{ApiError, ApiState};

/// How long a node name stays with the agent that last heartbeated it.
const HELD_FOR: std::time::Duration = std::time::Duration::from_secs(5);

/// `GET /cacerts`.
pub async fn ca(State(s): State<Arc<ApiState>>) -> Response {
    (
        [("content-type", "application/x-pem-file")],
        s.trust.ca_pem().to_string(),
    )
        .into_response()
}

/// A node's certificate request.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeCertificateRequest {
    /// The node's name.
    pub node: String,
    /// A PEM certificate signing request, signed by the node's own key.
    pub csr: String,
}

/// The signed certificate.
#[derive(Serialize)]
pub struct NodeCertificate {
    /// PEM.
    pub certificate: String,
    /// The CA (PEM).
    pub ca: String,
}

/// `POST /certificates/node`.
pub async fn sign_node(
    State(s): State<Arc<ApiState>>,
    Extension(caller): Extension<Caller>,
    Json(request): Json<NodeCertificateRequest>,
) -> Result<Response, ApiError> {
    let node = request.node;
    flotilla_spec::validate::check_name(&node)
        .map_err(|m| ApiError::invalid(format!("node: {m}")))?;
    match &caller {
        Caller::Node(own) if *own != node => {
            return Err(ApiError::forbidden(format!(
                "node {own} may renew only its own certificate, not {node}'s"
            )))
        }
        Caller::Node(_) | Caller::Admin => {}
        Caller::Joiner => refuse_held_name(&s, &node)?,
        Caller::View => return Err(ApiError::forbidden("the view role is read-only")),
    }
    let certificate = s
        .trust
        .authority
        .sign_node(&node, &request.csr, s.trust.node_cert_validity)
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    tracing::info!("issued a certificate to node {node} ({})", caller.name());
    Ok((
        StatusCode::CREATED,
        Json(NodeCertificate {
            certificate,
            ca: s.trust.ca_pem().to_string(),
        }),
    )
        .into_response())
}

/// A join token cannot take over the name of a node whose agent is alive
/// (it has its own certificate and never needs the token again).
fn refuse_held_name(s: &ApiState, node: &str) -> Result<(), ApiError> {
    let Some(stored) = s.store.get("Node", "", node)? else {
        return Ok(());
    };
    let last = stored["status"]["lastHeartbeat"]
        .as_str()
        .and_then(parse_rfc3339);
    let fresh = last
        .and_then(|t| std::time::SystemTime::now().duration_since(t).ok())
        .is_some_and(|age| age <= HELD_FOR);
    if fresh {
        tracing::warn!("refused node name {node} to a join token: held by a running agent");
        return Err(ApiError {
            code: StatusCode::CONFLICT,
            reason: "AlreadyExists",
            message: format!(
                "node name {node:?} is in use by a running agent; choose another --name (or stop that agent and wait {}s)",
                HELD_FOR.as_secs()
            ),
        });
    }
    Ok(())
}
