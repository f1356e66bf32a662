//! The node's ingress: an HTTP/1.1 listener that routes each request by
//! `Host` and path prefix to an `http` workload, and balances it over the
//! workload's Ready replicas cluster-wide — least outstanding requests, ties
//! round-robin. A local replica serves it with a fresh instance; a replica
//! on another node gets it through that node's port ([`crate::node_port`],
//! mutual TLS, one HTTP/2 connection per peer: [`crate::peers`]), which
//! serves it locally and never routes it again. A connection failure to a
//! node is retried once on another endpoint for idempotent methods.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use flotilla_http::Drained;
use http_body_util::{BodyExt, Full, Limited};
use hyper::server::conn::http1;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

use crate::cluster_view::{ClusterView, Endpoint};
use crate::endpoints::{LocalEndpoints, Replica};

use crate::peers::{Peers, SendError};
use crate::runtime::{plain_response, ResponseBody};

/// On a forwarded request: the workload (`namespace/name`) it was routed to
/// by the first node. A call by discovery name (`hello.default.flotilla`)
/// matches no route, so the receiving node must not route it again. Only
/// trusted on the node port (a node's certificate); stripped from every
/// request the public ingress takes and from guests' calls.
pub const WORKLOAD_HEADER: &str = "x-flotilla-workload";
/// On a forwarded request: the template hash of the replica the first node
/// chose, so that the receiving node serves it from that side of a canary.
pub const TEMPLATE_HEADER: &str = "x-flotilla-template-hash";
/// On a request a guest's call sent to another node: the calling workload
/// (`namespace/name`). The receiving node lets it reach a workload without
/// routes only if that workload's grants name it and the sending node (by
/// its certificate) runs one of its instances ([`crate::node_port`]).
pub const CALLER_HEADER: &str = "x-flotilla-caller";
/// On a forwarded request's answer: the receiving node served nothing (it
/// has no ready replica of the workload any more), so the request may go to
/// another node whatever its method.
const UNSERVED_HEADER: &str = "x-flotilla-unserved";
/// Every header only nodes may set; removed from whatever reaches a guest.
const INTERNAL_HEADERS: [&str; 3] = [WORKLOAD_HEADER, TEMPLATE_HEADER, CALLER_HEADER];
/// Headers about one HTTP/1.1 connection, which HTTP/2 does not carry.
const CONNECTION_HEADERS: [&str; 5] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
];

/// Largest request body forwarded to another node (kept for a retry).
const MAX_FORWARDED_BODY: usize = 16 << 20;

/// What one node's ingress allows a client.
#[derive(Debug, Clone, Copy)]
pub struct IngressLimits {
    /// Longest wait for a request's headers, and for the next request on
    /// an idle kept-alive connection (slow clients cannot hold connections).
    pub header_timeout: std::time::Duration,
    /// Connections open at once; more are answered 503 and closed.
    pub max_connections: usize,
    /// Longest wait for a free slot (`maxConcurrency`) of a local replica
    /// before answering 503 with `Retry-After`.
    pub slot_wait: std::time::Duration,
}

impl Default for IngressLimits {
    fn default() -> Self {
        Self {
            header_timeout: std::time::Duration::from_secs(30),
            max_connections: 10_000,
            slot_wait: std::time::Duration::from_secs(10),
        }
    }
}

/// The ingress of one node.
pub struct Ingress {
    node: String,
    local: Arc<LocalEndpoints>,
    cluster: ClusterView,
    limits: IngressLimits,
    /// Connections open now, up to `limits.max_connections`.
    connections: Arc<tokio::sync::Semaphore>,
    client: Client<HttpConnector, Full<Bytes>>,
    /// Connections to other nodes' ports.
    peers: Peers,
    /// Requests in flight to each remote instance.
    remote_outstanding: Mutex<HashMap<String, usize>>,
    cursor: AtomicUsize,
}

/// The workload a request goes to, and for whom.
#[derive(Clone, Copy)]
struct Destination<'a> {
    /// The workload, `namespace/name`.
    workload: &'a str,
    /// The calling workload, for a guest's call; `None` for a client of
    /// the public ingress (a routed request).
    caller: Option<&'a str>,
}

impl<'a> Destination<'a> {
    /// A request of the public ingress's client.
    fn routed(workload: &'a str) -> Self {
        Self {
            workload,
            caller: None,
        }
    }
}

/// Where one request may go.
enum Target {
    Local(Arc<Replica>),
    Remote(Endpoint, String),
}

impl Target {
    fn template_hash(&self) -> &str {
        match self {
            Target::Local(replica) => &replica.template_hash,
            Target::Remote(endpoint, _) => &endpoint.hash,
        }
    }
}

impl Ingress {
    /// The ingress of `node`: its replicas, and what it knows of the others.
    pub fn new(
        node: String,
        local: Arc<LocalEndpoints>,
        cluster: ClusterView,
        limits: IngressLimits,
        peers: Peers,
    ) -> Arc<Self> {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(std::time::Duration::from_secs(2)));
        Arc::new(Self {
            node,
            local,
            cluster,
            limits,
            connections: Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1))),
            client: Client::builder(TokioExecutor::new()).build(connector),
            peers,
            remote_outstanding: Mutex::new(HashMap::new()),
            cursor: AtomicUsize::new(0),
        })
    }

    /// Serves the ingress on `listener` until the process ends.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait, do not spin.
                    tracing::warn!("ingress: accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let Ok(permit) = self.connections.clone().try_acquire_owned() else {
                tokio::spawn(refuse_connection(stream, self.limits.max_connections));
                continue;
            };
            tokio::spawn(self.clone().serve_connection(stream, permit, "http"));
        }
    }

    /// Serves the ingress over HTTPS on `listener`, with the certificate
    /// of each connection's SNI host (`spec.tls` of the workloads), until
    /// the process ends. A client naming a host without a certificate fails
    /// its handshake; plain HTTP is answered with a hint.
    pub async fn serve_tls(
        self: Arc<Self>,
        listener: TcpListener,
        certificates: Arc<crate::ingress_tls::Certificates>,
    ) {
        let config = rustls::ServerConfig::builder_with_provider(flotilla_trust::tls::provider())
            .with_safe_default_protocol_versions()
            .map(|b| b.with_no_client_auth().with_cert_resolver(certificates));
        let mut config = match config {
            Ok(config) => config,
            Err(e) => {
                tracing::error!("ingress TLS cannot be set up: {e}");
                return;
            }
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!("ingress (TLS): accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            // Plain and TLS connections share one cap.
            let Ok(permit) = self.connections.clone().try_acquire_owned() else {
                drop(stream);
                continue;
            };
            let (ingress, acceptor) = (self.clone(), acceptor.clone());
            tokio::spawn(async move {
                match flotilla_trust::tls::accept(&acceptor, stream).await {
                    Ok((session, _)) => ingress.serve_connection(session, permit, "https").await,
                    Err(e) => tracing::debug!("ingress (TLS): {e}"),
                }
            });
        }
    }

    /// Serves HTTP/1.1 on one accepted connection, holding `permit` (one of
    /// the connection cap's) until it closes. Each request carries
    /// `x-forwarded-proto: <scheme>` (whatever the client sent), so a guest
    /// knows whether its client came over TLS.
    async fn serve_connection<IO>(
        self: Arc<Self>,
        io: IO,
        permit: tokio::sync::OwnedSemaphorePermit,
        scheme: &'static str,
    ) where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let _permit = permit;
        let header_timeout = self.limits.header_timeout;
        let ingress = self;
        let service =
            hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
                let ingress = ingress.clone();
                // A body left unread (a 404, a 413, a guest that never reads its
                // stdin) is drained, bounded, before the answer goes out: the
                // client finishes sending and gets the answer, rather than a
                // connection reset while it still writes.
                let (mut request, leftover) = flotilla_http::drained(request);
                request
                    .headers_mut()
                    .insert("x-forwarded-proto", http::HeaderValue::from_static(scheme));
                async move {
                    let response = ingress.handle(request).await;
                    leftover.finish().await;
                    Ok::<_, Infallible>(response)
                }
            });
        if let Err(e) = http1::Builder::new()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(header_timeout)
            .keep_alive(true)
            .serve_connection(TokioIo::new(io), service)
            .await
        {
            tracing::debug!("ingress connection: {e}");
        }
    }

    async fn handle(&self, mut request: http::Request<Drained>) -> http::Response<ResponseBody> {
        // An outside client cannot pick a workload without a route.
        for header in INTERNAL_HEADERS {
            request.headers_mut().remove(header);
        }
        let host = host_of(&request);
        let path = request.uri().path().to_string();
        let workload = self
            .cluster
            .route(&host, &path)
            .or_else(|| self.local.route(&host, &path));
        let Some(workload) = workload else {
            return plain_response(
                404,
                format!(
                    "no workload serves host {host:?} path {path:?}: give an execution: http workload routes: [{{host: {host}, pathPrefix: /}}]\n"
                ),
            );
        };
        let (targets, stable) = self.targets(&workload);
        let Some(first) = self.pick(&targets, None) else {
            return plain_response(
                503,
                format!("workload {workload} has no ready replica: see flotilla get instances (and describe them for why)\n"),
            );
        };
        // Only for safe methods (GET, HEAD…): they carry no body worth
        // buffering, and answering them twice changes nothing.
        if let Some(stable) = stable.filter(|_| request.method().is_safe()) {
            return self
                .with_fallback(&workload, request, (&targets, first), &stable)
                .await;
        }
        match first {
            Target::Local(replica) => {
                serve_local(replica, request, &path, self.limits.slot_wait).await
            }
            Target::Remote(endpoint, address) => {
                let (parts, body) = request.into_parts();
                let body = match Limited::new(body, MAX_FORWARDED_BODY).collect().await {
                    Ok(collected) => collected.to_bytes(),
                    Err(e) => {
                        return plain_response(413, format!("request body not forwarded: {e}\n"))
                    }
                };
                let to = Destination::routed(&workload);
                self.forward(to, &targets, endpoint, address, parts, body)
                    .await
            }
        }
    }

    /// A request another node routed to `workload` here (through the node
    /// port): served by a local replica, never routed again.
    pub async fn serve_forwarded(
        &self,
        workload: &str,
        mut request: http::Request<Drained>,
    ) -> http::Response<ResponseBody> {
        let path = request.uri().path().to_string();
        let hash = request
            .headers_mut()
            .remove(TEMPLATE_HEADER)
            .and_then(|h| h.to_str().ok().map(str::to_string));
        match self.local.pick_of(workload, hash.as_deref()) {
            Some(replica) => {
                let mut answer = serve_local(&replica, request, &path, self.limits.slot_wait).await;
                // Only this node says it served nothing, never a guest.
                answer.headers_mut().remove(UNSERVED_HEADER);
                answer
            }
            None => {
                let mut refused = plain_response(
                    503,
                    format!(
                        "workload {workload} has no ready replica on node {}\n",
                        self.node
                    ),
                );
                // Its last replica here just stopped: the sender may try
                // another node, as for a node it could not reach.
                refused
                    .headers_mut()
                    .insert(UNSERVED_HEADER, http::HeaderValue::from_static("1"));
                refused
            }
        }
    }

    /// A guest's call from workload `caller` to `workload` (service
    /// discovery; both `namespace/name`): balanced over its Ready replicas
    /// like ingress traffic.
    pub async fn call(
        &self,
        caller: &str,
        workload: &str,
        mut request: http::Request<Full<Bytes>>,
    ) -> http::Response<ResponseBody> {
        for header in INTERNAL_HEADERS {
            request.headers_mut().remove(header);
        }
        let (targets, _) = self.targets(workload);
        let Some(target) = self.pick(&targets, None) else {
            return plain_response(503, format!("workload {workload} has no ready replica\n"));
        };
        let (parts, body) = request.into_parts();
        let body = body
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        let to = Destination {
            workload,
            caller: Some(caller),
        };
        self.dispatch(to, &targets, target, parts, body).await
    }

    /// A request to a host outside the cluster (a granted `host:port`).
    pub async fn send_direct(
        &self,
        request: http::Request<Full<Bytes>>,
    ) -> Result<http::Response<ResponseBody>, String> {
        let target = request.uri().to_string();
        self.client
            .request(request)
            .await
            .map(|response| response.map(|b| b.map_err(Into::into).boxed_unsync()))
            .map_err(|e| format!("cannot reach {target}: {e}"))
    }

    /// Local replicas and the Ready replicas on other nodes; while the
    /// workload has a canary, those of the side this request goes to (the
    /// other side when that one has none ready), and, when that is the
    /// canary, the stable side too.
    fn targets(&self, workload: &str) -> (Vec<Target>, Option<Vec<Target>>) {
        let targets = self.all_targets(workload);
        let Some(split) = self.cluster.split(workload) else {
            // Rolled back: the bad version's replicas, still Ready while
            // they stop, get nothing (unless nothing else is left).
            if let Some(hash) = self.cluster.rolled_back_to(workload) {
                let (good, bad): (Vec<Target>, Vec<Target>) =
                    targets.into_iter().partition(|t| t.template_hash() == hash);
                return (if good.is_empty() { bad } else { good }, None);
            }
            return (targets, None);
        };
        let (canary, stable): (Vec<Target>, Vec<Target>) = targets
            .into_iter()
            .partition(|t| t.template_hash() == split.hash);
        match (split.next_is_canary(), canary.is_empty(), stable.is_empty()) {
            (true, false, false) => (canary, Some(stable)),
            (true, false, true) | (false, false, true) => (canary, None),
            _ => (stable, None),
        }
    }

    /// Sends a safe request to the canary (`first`, of `targets`);
    /// if the canary answers with a 5xx, the stable side answers instead:
    /// a bad canary shows in its analysis (its replicas count the 5xx),
    /// not to the client.
    async fn with_fallback(
        &self,
        workload: &str,
        request: http::Request<Drained>,
        (targets, first): (&[Target], &Target),
        stable: &[Target],
    ) -> http::Response<ResponseBody> {
        let (parts, body) = request.into_parts();
        let body = match Limited::new(body, MAX_FORWARDED_BODY).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) => return plain_response(413, format!("request body not forwarded: {e}\n")),
        };
        let answer = self
            .dispatch(
                Destination::routed(workload),
                targets,
                first,
                parts.clone(),
                body.clone(),
            )
            .await;
        if !answer.status().is_server_error() {
            return answer;
        }
        let Some(other) = self.pick(stable, None) else {
            return answer;
        };
        tracing::debug!(
            "ingress: the canary of {workload} answered {}; the stable side answers instead",
            answer.status()
        );
        self.dispatch(Destination::routed(workload), stable, other, parts, body)
            .await
    }

    /// Serves a buffered request on `target` (of `targets`, for a retry).
    async fn dispatch(
        &self,
        to: Destination<'_>,
        targets: &[Target],
        target: &Target,
        parts: http::request::Parts,
        body: Bytes,
    ) -> http::Response<ResponseBody> {
        match target {
            Target::Local(replica) => {
                let request = http::Request::from_parts(parts, Full::new(body));
                let path = request.uri().path().to_string();
                serve_local(replica, request, &path, self.limits.slot_wait).await
            }
            Target::Remote(endpoint, address) => {
                self.forward(to, targets, endpoint, address, parts, body)
                    .await
            }
        }
    }

    fn all_targets(&self, workload: &str) -> Vec<Target> {
        let mut targets: Vec<Target> = self
            .local
            .replicas(workload)
            .into_iter()
            .map(Target::Local)
            .collect();
        targets.extend(
            self.cluster
                .endpoints(workload)
                .into_iter()
                .filter(|(e, _)| e.node != self.node)
                .map(|(e, address)| Target::Remote(e, address)),
        );
        targets
    }

    fn outstanding(&self, target: &Target) -> usize {
        match target {
            Target::Local(replica) => replica.outstanding.load(Ordering::Relaxed),
            Target::Remote(endpoint, _) => self
                .remote_outstanding
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&endpoint.instance)
                .copied()
                .unwrap_or(0),
        }
    }

    /// Least outstanding, ties round-robin; never on `avoid_node`.
    fn pick<'a>(&self, targets: &'a [Target], avoid_node: Option<&str>) -> Option<&'a Target> {
        let n = targets.len();
        let start = self.cursor.fetch_add(1, Ordering::Relaxed);
        (0..n)
            .map(|i| &targets[(start + i) % n.max(1)])
            .filter(|t| !matches!((t, avoid_node), (Target::Remote(e, _), Some(node)) if e.node == node))
            .min_by_key(|t| self.outstanding(t))
    }

    /// Sends `request` to `endpoint`'s node; when the node cannot be
    /// reached, once more to another endpoint — for any request that never
    /// left this node, and for an idempotent one even if it may have (a
    /// POST that may have reached a dying node is not sent twice).
    async fn forward(
        &self,
        to: Destination<'_>,
        targets: &[Target],
        endpoint: &Endpoint,
        address: &str,
        parts: http::request::Parts,
        body: Bytes,
    ) -> http::Response<ResponseBody> {
        let first = self.send(to, &parts, body.clone(), endpoint, address).await;
        let error = match first {
            Ok(response) => return response,
            Err(error) => error,
        };
        if !may_retry(&parts.method, &error) {
            return plain_response(
                502,
                format!(
                    "{}; not retried: a {} may have reached it, and is not sent twice\n",
                    error.message, parts.method
                ),
            );
        }
        let error = error.message;
        tracing::info!("ingress: {error}; retrying {} elsewhere", to.workload);
        match self.pick(targets, Some(&endpoint.node)) {
            Some(Target::Local(replica)) => {
                let request = http::Request::from_parts(parts, Full::new(body));
                let path = request.uri().path().to_string();
                serve_local(replica, request, &path, self.limits.slot_wait).await
            }
            Some(Target::Remote(other, address)) => self
                .send(to, &parts, body, other, address)
                .await
                .unwrap_or_else(|e| plain_response(502, e.message)),
            None => plain_response(502, error),
        }
    }

    /// One forwarded request; `Err` when the node could not be reached.
    async fn send(
        &self,
        to: Destination<'_>,
        parts: &http::request::Parts,
        body: Bytes,
        endpoint: &Endpoint,
        address: &str,
    ) -> Result<http::Response<ResponseBody>, SendError> {
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let host = parts
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| parts.uri.authority().map(|a| a.as_str()))
            .unwrap_or("localhost");
        let mut request = http::Request::new(Full::new(body));
        *request.method_mut() = parts.method.clone();
        *request.headers_mut() = parts.headers.clone();
        // HTTP/2: the host travels as the URI's authority.
        *request.uri_mut() = format!("https://{host}{path}")
            .parse()
            .map_err(|e| SendError {
                message: format!("cannot forward to node {}: {e}", endpoint.node),
                maybe_sent: false,
            })?;
        let headers = request.headers_mut();
        for header in INTERNAL_HEADERS
            .iter()
            .chain(&CONNECTION_HEADERS)
            .chain(&["host"])
        {
            headers.remove(*header);
        }
        let value = |text: &str| {
            http::HeaderValue::from_str(text).map_err(|e| SendError {
                message: format!("cannot forward to node {}: {e}", endpoint.node),
                maybe_sent: false,
            })
        };
        headers.insert(WORKLOAD_HEADER, value(to.workload)?);
        if let Some(caller) = to.caller {
            headers.insert(CALLER_HEADER, value(caller)?);
        }
        if let Ok(hash) = http::HeaderValue::from_str(&endpoint.hash) {
            headers.insert(TEMPLATE_HEADER, hash);
        }
        let in_flight = InFlight::start(&self.remote_outstanding, &endpoint.instance);
        let result = self.peers.send(&endpoint.node, address, request).await;
        drop(in_flight);
        match result {
            Ok(response) if response.headers().contains_key(UNSERVED_HEADER) => Err(SendError {
                message: format!(
                    "node {} has no ready replica of {} any more",
                    endpoint.node, to.workload
                ),
                maybe_sent: false,
            }),
            Ok(response) => Ok(response.map(|b| b.map_err(Into::into).boxed_unsync())),
            Err(e) => Err(SendError {
                message: format!(
                    "cannot reach node {} at {address} for {}: {}",
                    endpoint.node, endpoint.instance, e.message
                ),
                maybe_sent: e.maybe_sent,
            }),
        }
    }
}

/// Whether a request the node could not answer may go to another replica:
/// always if it never left this node; if it may have reached the node, only
/// when sending it twice is harmless (an idempotent method).
fn may_retry(method: &http::Method, error: &SendError) -> bool {
    !error.maybe_sent || method.is_idempotent()
}

/// One request outstanding on a local replica, until dropped (also when
/// the client goes away mid-request).
struct Counted<'a>(&'a std::sync::atomic::AtomicUsize);

impl<'a> Counted<'a> {
    fn start(count: &'a std::sync::atomic::AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self(count)
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One request in flight to a remote instance, counted for balancing until
/// dropped — also when the client goes away mid-request.
struct InFlight<'a> {
    counts: &'a Mutex<HashMap<String, usize>>,
    instance: String,
}

impl<'a> InFlight<'a> {
    fn start(counts: &'a Mutex<HashMap<String, usize>>, instance: &str) -> Self {
        *counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(instance.to_string())
            .or_default() += 1;
        Self {
            counts,
            instance: instance.to_string(),
        }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = counts.get_mut(&self.instance) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                // Instances come and go: keep only those with requests in flight.
                counts.remove(&self.instance);
            }
        }
    }
}

/// The host a request is for: the `Host` header (or the URI's authority),
/// without its port.
fn host_of<B>(request: &http::Request<B>) -> String {
    let host = request
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| request.uri().host())
        .unwrap_or_default();
    host.rsplit_once(':')
        .map_or(host, |(name, _)| name)
        .to_ascii_lowercase()
}

/// Answers a connection over the cap with 503 and closes it.
async fn refuse_connection(mut stream: tokio::net::TcpStream, cap: usize) {
    use tokio::io::AsyncWriteExt;
    tracing::warn!("ingress: {cap} connections open already; refusing one");
    let body = format!("this node's ingress has {cap} connections open already: retry later\n");
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(1),
        stream.write_all(answer.as_bytes()),
    )
    .await;
}

/// Serves `request` with a fresh instance of a local replica, waiting at
/// most `slot_wait` for one of its `maxConcurrency` slots.
async fn serve_local<B>(
    replica: &Replica,
    request: http::Request<B>,
    path: &str,
    slot_wait: std::time::Duration,
) -> http::Response<ResponseBody>
where
    B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let counted = Counted::start(&replica.outstanding);
    let started = std::time::Instant::now();
    let spec = replica.spec.get();
    let served = match tokio::time::timeout(slot_wait, replica.slots.acquire()).await {
        Ok(Ok(_slot)) => {
            replica
                .counts
                .instances_created
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok(replica.module.serve(request, &spec).await)
        }
        Ok(Err(_)) => Err(plain_response(
            503,
            format!("replica {} stopped\n", replica.instance),
        )),
        Err(_) => {
            let mut busy = plain_response(
                503,
                format!(
                    "replica {} is busy: all its maxConcurrency slots stayed in use for {slot_wait:?}; retry later, or raise spec.maxConcurrency or spec.replicas\n",
                    replica.instance
                ),
            );
            busy.headers_mut().insert(
                http::header::RETRY_AFTER,
                http::HeaderValue::from_static("1"),
            );
            Err(busy)
        }
    };
    drop(counted);
    let served = match served {
        Ok(served) => served,
        Err(refused) => return refused,
    };
    replica
        .counts
        .answered(served.response.status(), started.elapsed());
    if let Some(failure) = &served.failure {
        if let Some(log) = &spec.log {
            let detail = failure.trap.clone().or_else(|| failure.message.clone());
            log.note(&format!(
                "[flotilla] request {path} failed: {} {}",
                failure.reason,
                detail.unwrap_or_default()
            ));
        }
        (replica.on_failure)(failure);
    }
    served.response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_request_that_may_have_arrived_and_is_not_idempotent_stays_unretried() {
        let error = |maybe_sent| SendError {
            message: String::new(),
            maybe_sent,
        };
        assert!(may_retry(&http::Method::POST, &error(false)));
        assert!(!may_retry(&http::Method::POST, &error(true)));
        assert!(may_retry(&http::Method::GET, &error(true)));
        assert!(may_retry(&http::Method::PUT, &error(true)));
    }
}
