//! `GET /apis/flotilla.dev/v1/namespaces/{ns}/instances/{name}/log[?follow=true&previous=true]`:
//! an instance's output, read from the node that runs it.
//!
//! Logs stay on the nodes (as with kubelet): the API server looks up the
//! instance's node and streams the log from that node's node port
//! ([`LOGS_PATH`]) over mutual TLS — the same path whether the agent shares
//! the process (`flotilla up`) or not.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use flotilla_spec::node::LOGS_PATH;
use flotilla_trust::names::node_server_name;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;

use super::{ApiError, ApiState};

/// Longest wait to connect to a node port and complete the handshake.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// GETs `path` from `node`'s node port at `address` over TLS: the node
/// must present the certificate the CA issued to *that* node (whatever
/// address it reported), and the control plane presents its own.
pub(super) async fn dial_node(
    s: &ApiState,
    node: &str,
    address: &str,
    path: &str,
) -> Result<hyper::Response<hyper::body::Incoming>, String> {
    let name = ServerName::try_from(node_server_name(node)).map_err(|e| e.to_string())?;
    let connect = async {
        let tcp = tokio::net::TcpStream::connect(address)
            .await
            .map_err(|e| e.to_string())?;
        let tls = tokio_rustls::TlsConnector::from(s.node_tls.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS: {e} (is it the node it claims to be?)"))?;
        hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| e.to_string())
    };
    let (mut sender, connection) = tokio::time::timeout(CONNECT_TIMEOUT, connect)
        .await
        .map_err(|_| format!("no answer within {CONNECT_TIMEOUT:?}"))??;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!("node log connection: {e}");
        }
    });
    let request = hyper::Request::get(path)
        .header("host", node_server_name(node))
        .body(Empty::<axum::body::Bytes>::new())
        .map_err(|e| e.to_string())?;
    sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())
}

/// The handler.
pub async fn get(
    State(s): State<Arc<ApiState>>,
    Path((ns, name)): Path<(String, String)>,
    Query(params): Query<HashMap<String, String>>,
    recheck: Option<axum::Extension<super::recheck::Recheck>>,
) -> Result<Response, ApiError> {
    let flag = |k: &str| super::query_flag(&params, k);
    let instance = s.store.get("Instance", &ns, &name)?.ok_or_else(|| {
        ApiError::not_found(format!("instances {name:?} not found in namespace {ns:?}"))
    })?;
    let node = instance["spec"]["nodeName"].as_str().unwrap_or_default();
    if node.is_empty() {
        return Err(ApiError::bad_request(format!(
            "instance {name:?} is not on a node yet, so it has no output: see flotilla describe instance {name}"
        )));
    }
    let address = s
        .store
        .get("Node", "", node)?
        .and_then(|n| n["status"]["nodeAddress"].as_str().map(str::to_string))
        .unwrap_or_default();
    if address.is_empty() {
        return Err(ApiError::not_found(format!(
            "node {node} has not reported its node port yet, so its logs cannot be read; is its agent running?"
        )));
    }
    let path = format!(
        "{LOGS_PATH}{ns}/{name}?follow={}&previous={}",
        flag("follow"),
        flag("previous")
    );
    let unreachable = |e: String| ApiError {
        code: StatusCode::BAD_GATEWAY,
        reason: "NodeUnreachable",
        message: format!("cannot read the logs of {name} from node {node} at {address}: {e}"),
    };
    let response = dial_node(&s, node, &address, &path)
        .await
        .map_err(unreachable)?;
    let status = response.status();
    if status == StatusCode::NOT_FOUND {
        let body = response.into_body().collect().await.map(|b| b.to_bytes());
        let text = body.map(|b| String::from_utf8_lossy(&b).trim().to_string());
        return Err(ApiError::not_found(text.unwrap_or_default()));
    }
    if !status.is_success() {
        return Err(unreachable(format!("it answered {status}")));
    }
    let stream = response.into_body().into_data_stream();
    let body = match recheck {
        Some(axum::Extension(recheck)) => {
            Body::from_stream(super::recheck::follow(stream, recheck))
        }
        None => Body::from_stream(stream),
    };
    Ok(([("content-type", "text/plain; charset=utf-8")], body).into_response())
}
