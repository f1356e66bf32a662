//! `GET /cacerts` (no credential: what a joining agent checks against its
//! token's hash) and `POST /certificates/node` (a join token, or a node's
//! own certificate to renew it): signs a node's certificate request.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};

use super::authz::Caller;
use super::tokens::TokenId;
use super::{ApiError, ApiState};

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
    Extension(TokenId(token)): Extension<TokenId>,
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
        Caller::Member(m) => {
            return Err(ApiError::forbidden(format!(
                "token {} holds roles in namespaces only: it cannot get node certificates",
                m.token
            )))
        }
    }
    let certificate = s
        .trust
        .authority
        .sign_node(&node, &request.csr, s.trust.node_cert_validity)
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    // Counted once the request proved good (a bad CSR costs no use), and
    // before the certificate leaves: over its uses, none is handed out.
    if let (Caller::Joiner, Some(id)) = (&caller, &token) {
        super::tokens::use_join_token(s.store.as_ref(), id)?;
    }
    // Recorded before it is handed out: one that could not be revoked is
    // not issued.
    crate::node_certificates::record(s.store.as_ref(), &node, &certificate)?;
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

/// A join token gets a certificate only for a name no Node has: a node
/// that joined holds its own certificate and never needs the token again,
/// so a token cannot take over a registered node (not even one that is
/// silent for a while — restarting, upgrading, cut off).
fn refuse_held_name(s: &ApiState, node: &str) -> Result<(), ApiError> {
    if s.store.get("Node", "", node)?.is_none() {
        return Ok(());
    }
    tracing::warn!("refused node name {node} to a join token: a node of that name is registered");
    Err(ApiError {
        code: StatusCode::CONFLICT,
        reason: "AlreadyExists",
        message: format!(
            "node name {node:?} is registered already, and its agent holds its certificate: choose another --name, or, to give the name to this machine, delete the old node first (flotilla delete node {node})"
        ),
    })
}
