//! `GET /apis/flotilla.dev/v1/namespaces/{ns}/instances/{name}/log[?follow=true&previous=true]`:
//! an instance's output, read from the node that runs it.
//!
//! Logs stay on the nodes (as with kubelet): the API server looks up the
//! instance's node and streams the log from that node's ingress
//! ([`LOGS_PATH`]), authenticated with the cluster's join token — the same
//! path whether the agent shares the process (`flotilla up`) or not.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use flotilla_spec::node::LOGS_PATH;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::{ApiError, ApiState, Role};

/// The handler.
pub async fn get(
    State(s): State<Arc<ApiState>>,
    Path((ns, name)): Path<(String, String)>,
    Query(params): Query<HashMap<String, String>>,
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
        .and_then(|n| n["status"]["ingressAddress"].as_str().map(str::to_string))
        .unwrap_or_default();
    if address.is_empty() {
        return Err(ApiError::not_found(format!(
            "node {node} serves no logs: its agent runs without an ingress (--ingress off)"
        )));
    }
    let token = s
        .tokens
        .iter()
        .find(|(_, role)| *role == Role::Node)
        .map(|(token, _)| token.clone())
        .unwrap_or_default();
    let uri = format!(
        "http://{address}{LOGS_PATH}{ns}/{name}?follow={}&previous={}",
        flag("follow"),
        flag("previous")
    );
    let request = hyper::Request::get(&uri)
        .header("authorization", format!("Bearer {token}"))
        .body(Empty::<axum::body::Bytes>::new())
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let client = Client::builder(TokioExecutor::new()).build_http();
    let unreachable = |e: String| ApiError {
        code: StatusCode::BAD_GATEWAY,
        reason: "NodeUnreachable",
        message: format!("cannot read the logs of {name} from node {node} at {address}: {e}"),
    };
    let response = client
        .request(request)
        .await
        .map_err(|e| unreachable(e.to_string()))?;
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
    Ok((
        [("content-type", "text/plain; charset=utf-8")],
        Body::from_stream(stream),
    )
        .into_response())
}
