//! The node port (`--node-listen`): this node's own endpoints, off the
//! public ingress, over TLS with client certificates required — only
//! certificates the cluster CA issued get in:
//!
//! - `GET {LOGS_PATH}{namespace}/{instance}` — instance logs, and
//!   `GET {METRICS_PATH}` — the node's metrics, for the control plane's
//!   certificate only;
//! - any other request, from another node's certificate only, carrying
//!   `x-flotilla-workload`: a request that node's ingress routed to a
//!   replica here (served locally, never routed again) — only for a
//!   workload with routes (its public ingress takes such requests anyway),
//!   or for a guest's call whose workload (`x-flotilla-caller`) is granted
//!   the target and runs on the sending node ([`may_forward`]). A node
//!   that is taken over reaches no more than the workloads it runs may.

use std::sync::Arc;

use flotilla_http::Drained;
use futures_util::TryStreamExt;
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use crate::cluster_view::ClusterView;
use crate::credentials::NodeCredentials;
use crate::ingress::{Ingress, CALLER_HEADER, WORKLOAD_HEADER};
use crate::logs::LogDir;
use crate::runtime::{plain_response, ResponseBody};
use flotilla_spec::node::{LOGS_PATH, METRICS_PATH};
use flotilla_trust::names::{Peer, Presented};

/// Connections the node port serves at once.
const MAX_CONNECTIONS: usize = 1024;
/// Connections one address may hold (handshakes included): the control
/// plane and each peer need a few.
const MAX_CONNECTIONS_PER_PEER: usize = 128;

/// What the node port serves.
pub struct NodePort {
    /// This node.
    pub node: String,
    /// Its credentials (the TLS configuration follows renewals).
    pub credentials: Arc<NodeCredentials>,
    /// Where instance logs are.
    pub logs: LogDir,
    /// The ingress, for requests forwarded by other nodes.
    pub ingress: Arc<Ingress>,
    /// The node's metrics.
    pub metrics: Arc<crate::metrics::NodeMetrics>,
    /// The cluster as the API shows it: which peers' certificates were
    /// revoked.
    pub cluster: crate::cluster_view::ClusterView,
}

impl NodePort {
    /// Serves on `listener` until the process ends.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
        let per_peer = flotilla_trust::connections::PerPeer::new(MAX_CONNECTIONS_PER_PEER);
        loop {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return;
            };
            let (stream, address) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!("node port: accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Some(held) = per_peer.hold(address.ip()) else {
                tracing::debug!("node port: {address} holds {MAX_CONNECTIONS_PER_PEER} connections already; refusing one");
                continue;
            };
            let _ = stream.set_nodelay(true);
            let port = self.clone();
            tokio::spawn(async move {
                let _permit = (permit, held);
                let acceptor = tokio_rustls::TlsAcceptor::from(port.credentials.node_port_config());
                let (session, peer) = match flotilla_trust::tls::accept(&acceptor, stream).await {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::info!("node port: refused a connection from {address}: {e}");
                        return;
                    }
                };
                let service = hyper::service::service_fn(move |request| {
                    let port = port.clone();
                    let peer = peer.clone();
                    // As the ingress: unread bodies drained before answers.
                    let (request, leftover) = flotilla_http::drained(request);
                    async move {
                        let response = port.handle(peer, request).await;
                        leftover.finish().await;
                        Ok::<_, std::convert::Infallible>(response)
                    }
                });
                let mut builder = auto::Builder::new(TokioExecutor::new());
                builder
                    .http1()
                    .timer(TokioTimer::new())
                    .header_read_timeout(std::time::Duration::from_secs(30));
                if let Err(e) = builder
                    .serve_connection(TokioIo::new(session), service)
                    .await
                {
                    tracing::debug!("node port connection from {address}: {e}");
                }
            });
        }
    }

    async fn handle(
        &self,
        presented: Option<Presented>,
        mut request: http::Request<Drained>,
    ) -> http::Response<ResponseBody> {
        // Checked per request, not per connection: a peer's HTTP/2
        // connection outlives the revocation of its certificate.
        if let Some(Presented {
            peer: Peer::Node(node),
            serial,
        }) = &presented
        {
            if self.cluster.is_revoked(serial) {
                tracing::warn!(
                    "node port: refused node {node}: its certificate {serial} was revoked"
                );
                return plain_response(
                    403,
                    format!("the certificate of node {node} (serial {serial}) was revoked\n"),
                );
            }
        }
        let peer = presented.map(|p| p.peer);
        let mut header = |name: &str| {
            request
                .headers_mut()
                .remove(name)
                .and_then(|w| w.to_str().ok().map(str::to_string))
        };
        let (workload, caller) = (header(WORKLOAD_HEADER), header(CALLER_HEADER));
        let logs = request.uri().path().starts_with(LOGS_PATH);
        let metrics = request.uri().path() == METRICS_PATH;
        let workload = match (&peer, workload) {
            // Whatever its path: another node routed it to a workload here.
            (Some(Peer::Node(node)), Some(workload)) => {
                if let Err(refusal) = may_forward(&self.cluster, node, caller.as_deref(), &workload)
                {
                    tracing::info!("node port: refused a request from node {node}: {refusal}");
                    return plain_response(403, format!("{refusal}\n"));
                }
                workload
            }
            (Some(Peer::ControlPlane), _) if logs => return self.serve_log(&request),
            (Some(Peer::ControlPlane), _) if metrics => {
                let mut response = plain_response(200, self.metrics.encode());
                response.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                return response;
            }
            (_, _) if logs || metrics => {
                return plain_response(
                    403,
                    "logs and metrics are for the control plane's certificate\n".into(),
                )
            }
            (Some(Peer::Node(_)), None) => {
                return plain_response(
                    400,
                    format!("a forwarded request names its workload in {WORKLOAD_HEADER}\n"),
                )
            }
            _ => return plain_response(403, "only other nodes forward requests here\n".into()),
        };
        // HTTP/2 carries the host as the URI's authority: guests read Host.
        if !request.headers().contains_key(http::header::HOST) {
            if let Some(host) = request
                .uri()
                .authority()
                .and_then(|a| http::HeaderValue::from_str(a.as_str()).ok())
            {
                request.headers_mut().insert(http::header::HOST, host);
            }
        }
        self.ingress.serve_forwarded(&workload, request).await
    }

    /// An instance's log.
    fn serve_log<B>(&self, request: &http::Request<B>) -> http::Response<ResponseBody> {
        let rest = &request.uri().path()[LOGS_PATH.len()..];
        let names = rest.split_once('/').filter(|(namespace, instance)| {
            // Names only: nothing like `..` reaches the file system.
            flotilla_spec::validate::check_name(namespace).is_ok()
                && flotilla_spec::validate::check_object_name(instance).is_ok()
        });
        let Some((namespace, instance)) = names else {
            return plain_response(404, format!("no such log: {rest:?}\n"));
        };
        let query = request.uri().query().unwrap_or_default();
        let flag = |k: &str| {
            query
                .split('&')
                .any(|p| p == format!("{k}=true") || p == format!("{k}=1"))
        };
        let path = self.logs.path(namespace, instance, flag("previous"));
        if !path.exists() && (flag("previous") || !flag("follow")) {
            let what = if flag("previous") {
                "no previous run"
            } else {
                "no output yet"
            };
            return plain_response(
                404,
                format!(
                    "instance {namespace}/{instance} has {what} on node {}\n",
                    self.node
                ),
            );
        }
        let stream = crate::logs::stream(path, flag("follow"))
            .map_ok(hyper::body::Frame::data)
            .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>);
        let mut response =
            http::Response::new(http_body_util::StreamBody::new(stream).boxed_unsync());
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        response
    }
}

/// Whether node `from` may forward a request to `workload` here: it is
/// routed (the public ingress of every node takes requests for it), or it
/// is a guest's call from `caller`, a workload whose grants name it and of
/// which `from` runs an instance. Otherwise why not, and the fix.
pub fn may_forward(
    cluster: &ClusterView,
    from: &str,
    caller: Option<&str>,
    workload: &str,
) -> Result<(), String> {
    if cluster.is_routed(workload) {
        return Ok(());
    }
    let Some(caller) = caller else {
        return Err(format!(
            "node {from} may not forward to workload {workload}: it has no routes (spec.routes), and the request names no calling workload granted it"
        ));
    };
    if !cluster.may_call(caller, workload) {
        return Err(format!(
            "workload {caller} may not call workload {workload}: add it to spec.grants.workloads of {caller}"
        ));
    }
    if !cluster.runs_on(caller, from) {
        return Err(format!(
            "node {from} may not call on behalf of workload {caller}: it runs no instance of it"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    fn workload(name: &str, routes: Value, calls: Value) -> Value {
        json!({"metadata": {"namespace": "team-a", "name": name},
               "spec": {"execution": "http", "routes": routes, "grants": {"workloads": calls}}})
    }

    fn instance(name: &str, workload: &str, node: &str) -> Value {
        json!({"metadata": {"namespace": "team-a", "name": name},
               "spec": {"workload": workload, "nodeName": node, "template": {"execution": "http"}}})
    }

    #[test]
    fn only_routed_workloads_and_granted_callers_on_the_sending_node_get_through() {
        let view = ClusterView::of(
            vec![
                workload("shop", json!([{"host": "shop.example"}]), json!([])),
                workload("db", json!([]), json!([])),
                workload("api", json!([]), json!(["db", "team-b/ledger"])),
                workload("idle", json!([]), json!([])),
            ],
            vec![
                instance("api-1", "api", "edge-a"),
                instance("idle-1", "idle", "edge-a"),
            ],
        );
        // Routed: anyone's public ingress takes it, so any node forwards it.
        assert_eq!(may_forward(&view, "edge-z", None, "team-a/shop"), Ok(()));
        // Granted, by a node that runs the caller; qualified grants too.
        assert_eq!(
            may_forward(&view, "edge-a", Some("team-a/api"), "team-a/db"),
            Ok(())
        );
        assert_eq!(
            may_forward(&view, "edge-a", Some("team-a/api"), "team-b/ledger"),
            Ok(())
        );
        let refused =
            |from, caller, workload| may_forward(&view, from, caller, workload).unwrap_err();
        assert!(refused("edge-a", None, "team-a/db").contains("has no routes"));
        assert!(refused("edge-a", Some("team-a/idle"), "team-a/db")
            .contains("add it to spec.grants.workloads of team-a/idle"));
        // Claiming a caller it does not run.
        assert!(refused("edge-b", Some("team-a/api"), "team-a/db")
            .contains("node edge-b may not call on behalf of workload team-a/api"));
        assert!(refused("edge-a", Some("team-a/ghost"), "team-a/db").contains("spec.grants"));
        // Its last instance there gone: no more calls on its behalf.
        view.apply_instance_event(instance("api-1", "api", "edge-a"), true);
        assert!(refused("edge-a", Some("team-a/api"), "team-a/db").contains("runs no instance"));
        // Moved: the count follows the binding.
        view.apply_instance_event(instance("api-2", "api", "edge-b"), false);
        assert_eq!(
            may_forward(&view, "edge-b", Some("team-a/api"), "team-a/db"),
            Ok(())
        );
        view.apply_instance_event(instance("api-2", "api", "edge-c"), false);
        assert!(refused("edge-b", Some("team-a/api"), "team-a/db").contains("runs no instance"));
    }
}
