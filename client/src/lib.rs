//! A typed client of the Flotilla API, shared by the CLI and the agents.
//!
//! It speaks the paths of `flotilla-control-plane`'s API over TLS (trusting
//! the cluster CA only), authenticates with a bearer token or a node's
//! certificate, turns `Status` error bodies back into messages, and reads
//! watch streams line by line.

pub mod kv;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

pub use flotilla_trust::Identity;

use futures_util::{Stream, StreamExt};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// A failed API call.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server could not be reached at all.
    #[error("cannot reach the Flotilla API at {url}: {message} (is the server running? start one with `flotilla up`)")]
    Unreachable {
        /// The server URL tried.
        url: String,
        /// Why.
        message: String,
    },
    /// The server answered with an error.
    #[error("{message}")]
    Api {
        /// HTTP status code.
        code: u16,
        /// The `Status` reason (`NotFound`, `Conflict`…).
        reason: String,
        /// The server's message.
        message: String,
    },
    /// TLS could not be set up (a bad CA or certificate).
    #[error("TLS: {0}")]
    Tls(String),
    /// The answer could not be decoded.
    #[error("unexpected answer from the server: {0}")]
    Decode(String),
}

impl ClientError {
    /// The HTTP status code, for API errors.
    pub fn code(&self) -> Option<u16> {
        match self {
            ClientError::Api { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// One event of a watch stream.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct WatchEvent {
    /// ADDED, MODIFIED, DELETED, BOOKMARK or ERROR.
    #[serde(rename = "type")]
    pub kind: String,
    /// The object.
    pub object: Value,
}

/// A list and the revision to watch from.
#[derive(Debug, Clone)]
pub struct ObjectList {
    /// The objects.
    pub items: Vec<Value>,
    /// `metadata.resourceVersion` of the list.
    pub revision: String,
}

/// How a client proves who it is and knows whom it talks to.
#[derive(Clone, Debug)]
pub struct Credentials {
    /// The cluster CA (PEM): the only one the client trusts.
    pub ca_pem: String,
    /// A bearer token (admin, view), if any.
    pub token: Option<String>,
    /// A client certificate (a node's), if any.
    pub identity: Option<Identity>,
}

/// A connection to the API: one server, or several of one control plane
/// (`https://a:7443,https://b:7443`). A request that cannot connect to the
/// server in use goes to the next one at once (nothing was sent, so any
/// request may), and the client stays with the one that answered; the
/// caller's own retries pace a control plane that is down altogether.
#[derive(Clone)]
pub struct Client {
    http: Arc<RwLock<reqwest::Client>>,
    servers: Arc<[String]>,
    /// Index into `servers` of the one in use (shared by clones).
    current: Arc<AtomicUsize>,
    token: Option<String>,
    ca_pem: String,
    /// How long a request (not a stream) may take, if bounded.
    timeout: Option<Duration>,
}

/// How long an agent's requests may take (a whole list of a large fleet
/// included); heartbeats have a shorter bound of their own.
pub const AGENT_REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// A watch stream silent this long is taken as dead (the server sends a
/// BOOKMARK every 5 s): a stopped or cut-off server leaves it open.
pub const WATCH_IDLE: Duration = Duration::from_secs(16);

/// The servers in `list` (comma-separated URLs), each checked to be HTTPS.
pub fn servers_of(list: &str) -> Result<Vec<String>, ClientError> {
    let servers: Vec<String> = list
        .split(',')
        .map(|s| s.trim().trim_end_matches('/').to_string())
        .filter(|s| !s.is_empty())
        .collect();
    if servers.is_empty() {
        return Err(ClientError::Tls("no server address given".into()));
    }
    if let Some(plain) = servers.iter().find(|s| !s.starts_with("https://")) {
        return Err(ClientError::Tls(format!(
            "{plain}: Flotilla servers speak HTTPS only (use https://)"
        )));
    }
    Ok(servers)
}

fn http_client(ca_pem: &str, identity: Option<&Identity>) -> Result<reqwest::Client, ClientError> {
    let tls = flotilla_trust::tls::client_config(ca_pem, identity, &[b"http/1.1"])
        .map_err(|e| ClientError::Tls(e.to_string()))?;
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(3))
        .no_proxy()
        .use_preconfigured_tls(tls)
        .build()
        .map_err(|e| ClientError::Tls(e.to_string()))
}

/// Fetches the CA certificate a server presents at `/cacerts`, without
/// trusting it (nothing secret is sent): the caller compares its hash
/// with what a join token pins before it trusts it.
pub async fn fetch_ca(servers: &str) -> Result<String, ClientError> {
    let mut last = None;
    for base in servers_of(servers)? {
        match fetch_ca_from(&base).await {
            Err(e @ ClientError::Unreachable { .. }) => last = Some(e),
            answered => return answered,
        }
    }
    Err(last.unwrap_or_else(|| ClientError::Tls("no server address given".into())))
}

async fn fetch_ca_from(base: &str) -> Result<String, ClientError> {
    let tls =
        flotilla_trust::tls::first_contact_config().map_err(|e| ClientError::Tls(e.to_string()))?;
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(10))
        .no_proxy()
        .use_preconfigured_tls(tls)
        .build()
        .map_err(|e| ClientError::Tls(e.to_string()))?;
    let base = base.trim_end_matches('/');
    let unreachable = |e: reqwest::Error| ClientError::Unreachable {
        url: base.to_string(),
        message: error_chain(&e),
    };
    let response = http
        .get(format!("{base}/cacerts"))
        .send()
        .await
        .map_err(unreachable)?;
    if !response.status().is_success() {
        return Err(ClientError::Decode(format!(
            "{base}/cacerts answered {}: is this a Flotilla server?",
            response.status()
        )));
    }
    let bytes = response.bytes().await.map_err(unreachable)?;
    if bytes.len() > 64 << 10 {
        return Err(ClientError::Decode(
            "the CA certificate is over 64 KiB".into(),
        ));
    }
    String::from_utf8(bytes.to_vec()).map_err(|e| ClientError::Decode(e.to_string()))
}

/// An error and its causes, on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        message = format!("{message}: {s}");
        source = s.source();
    }
    message
}

/// The collection path of a kind's plural, namespaced or not.
pub fn collection_path(plural: &str, namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) => format!("/apis/flotilla.dev/v1/namespaces/{ns}/{plural}"),
        None => format!("/apis/flotilla.dev/v1/{plural}"),
    }
}

impl Client {
    /// A client of the server at `base` (e.g. `https://127.0.0.1:7443`).
    pub fn new(servers: &str, credentials: Credentials) -> Result<Self, ClientError> {
        let servers = servers_of(servers)?;
        let http = http_client(&credentials.ca_pem, credentials.identity.as_ref())?;
        Ok(Self {
            http: Arc::new(RwLock::new(http)),
            servers: servers.into(),
            current: Arc::new(AtomicUsize::new(0)),
            token: credentials.token.filter(|t| !t.is_empty()),
            ca_pem: credentials.ca_pem,
            timeout: None,
        })
    }

    /// Bounds every request but streams and module transfers: one that
    /// takes longer fails as unreachable, and the next request goes to the
    /// next server (a stopped server accepts connections and never
    /// answers). For agents, whose heartbeats must not hang.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    fn bounded(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self.timeout {
            Some(timeout) => request.timeout(timeout),
            None => request,
        }
    }

    /// The next request goes to the next server (the one in use has
    /// stopped answering).
    pub fn next_server(&self) {
        self.move_on(self.current.load(Ordering::Relaxed) % self.servers.len());
    }

    /// The next request goes to the next server.
    fn move_on(&self, from: usize) {
        let _ = self.current.compare_exchange(
            from,
            (from + 1) % self.servers.len(),
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    /// Presents `identity` from now on (a renewed node certificate); the
    /// clones of this client switch too.
    pub fn set_identity(&self, identity: &Identity) -> Result<(), ClientError> {
        let http = http_client(&self.ca_pem, Some(identity))?;
        *self.http.write().unwrap_or_else(|p| p.into_inner()) = http;
        Ok(())
    }

    fn http(&self) -> reqwest::Client {
        self.http.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The URL of the server in use.
    pub fn base(&self) -> String {
        let at = self.current.load(Ordering::Relaxed) % self.servers.len();
        self.servers[at].clone()
    }

    fn unreachable(&self, e: reqwest::Error) -> ClientError {
        ClientError::Unreachable {
            url: self.base(),
            message: error_chain(&e),
        }
    }

    /// Sends `request` to the server in use, and on a failure to connect
    /// to each of the others in turn.
    async fn execute(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ClientError> {
        let request = self
            .authorized(request)
            .build()
            .map_err(|e| ClientError::Decode(e.to_string()))?;
        let first = self.current.load(Ordering::Relaxed);
        let mut failure = None;
        for step in 0..self.servers.len() {
            let at = (first + step) % self.servers.len();
            // A streamed body cannot be sent twice: one try.
            let Some(mut attempt) = request.try_clone() else {
                return self
                    .http()
                    .execute(request)
                    .await
                    .map_err(|e| self.unreachable(e));
            };
            if let Ok(origin) = reqwest::Url::parse(&self.servers[at]) {
                let url = attempt.url_mut();
                let _ = url.set_scheme(origin.scheme());
                let _ = url.set_host(origin.host_str());
                let _ = url.set_port(origin.port());
            }
            let reads = matches!(
                *request.method(),
                reqwest::Method::GET | reqwest::Method::HEAD
            );
            let last = step + 1 == self.servers.len();
            match self.http().execute(attempt).await {
                Err(e) if e.is_connect() => {
                    failure = Some(ClientError::Unreachable {
                        url: self.servers[at].clone(),
                        message: error_chain(&e),
                    });
                }
                Err(e) => {
                    if e.is_timeout() {
                        self.move_on(at);
                    }
                    return Err(ClientError::Unreachable {
                        url: self.servers[at].clone(),
                        message: error_chain(&e),
                    });
                }
                // A server cut off from its store: a read may find another
                // that is not (a write is left to the caller: it may have
                // been applied).
                Ok(response)
                    if reads
                        && !last
                        && response.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE => {}
                Ok(response) => {
                    if at != first % self.servers.len() {
                        self.current.store(at, Ordering::Relaxed);
                    }
                    return Ok(response);
                }
            }
        }
        // All down: the next call starts with the next server.
        self.current
            .store((first + 1) % self.servers.len(), Ordering::Relaxed);
        Err(failure.unwrap_or_else(|| ClientError::Tls("no server address given".into())))
    }

    fn authorized(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ClientError> {
        let response = self.execute(request).await?;
        if response.status().is_success() {
            return Ok(response);
        }
        let code = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        Err(ClientError::Api {
            code,
            reason: body["reason"].as_str().unwrap_or_default().to_string(),
            message: body["message"]
                .as_str()
                .map(String::from)
                .unwrap_or_else(|| format!("the server answered HTTP {code}")),
        })
    }

    async fn json<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<T, ClientError> {
        self.send(self.bounded(request))
            .await?
            .json()
            .await
            .map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// GET a path as JSON.
    pub async fn get(&self, path: &str) -> Result<Value, ClientError> {
        self.json(self.http().get(format!("{}{path}", self.base())))
            .await
    }

    /// GET a path as text (metrics).
    pub async fn get_text(&self, path: &str) -> Result<String, ClientError> {
        self.send(self.bounded(self.http().get(format!("{}{path}", self.base()))))
            .await?
            .text()
            .await
            .map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// Lists a collection (`query` like `fieldSelector=spec.nodeName=n1`).
    pub async fn list(&self, path: &str, query: &str) -> Result<ObjectList, ClientError> {
        let url = if query.is_empty() {
            format!("{}{path}", self.base())
        } else {
            format!("{}{path}?{query}", self.base())
        };
        let list: Value = self.json(self.http().get(url)).await?;
        Ok(ObjectList {
            revision: list["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            items: list["items"].as_array().cloned().unwrap_or_default(),
        })
    }

    /// POST an object to a collection.
    pub async fn create(&self, collection: &str, object: &Value) -> Result<Value, ClientError> {
        self.json(
            self.http()
                .post(format!("{}{collection}", self.base()))
                .json(object),
        )
        .await
    }

    /// PUT an object (or its `/status`).
    pub async fn replace(&self, path: &str, object: &Value) -> Result<Value, ClientError> {
        self.json(
            self.http()
                .put(format!("{}{path}", self.base()))
                .json(object),
        )
        .await
    }

    /// PATCH an object with a JSON merge patch (RFC 7386).
    pub async fn merge_patch(&self, path: &str, patch: &Value) -> Result<Value, ClientError> {
        self.json(
            self.http()
                .patch(format!("{}{path}", self.base()))
                .header("content-type", "application/merge-patch+json")
                .json(patch),
        )
        .await
    }

    /// DELETE an object.
    pub async fn delete(&self, path: &str) -> Result<Value, ClientError> {
        self.json(self.http().delete(format!("{}{path}", self.base())))
            .await
    }

    /// Uploads a module to the blob store.
    pub async fn put_blob(&self, digest: &str, bytes: Vec<u8>) -> Result<(), ClientError> {
        let head = self
            .execute(
                self.http()
                    .head(format!("{}/blobs/sha256/{digest}", self.base())),
            )
            .await?;
        if head.status().is_success() {
            return Ok(());
        }
        self.send(
            self.http()
                .put(format!("{}/blobs/sha256/{digest}", self.base()))
                .body(bytes),
        )
        .await
        .map(drop)
    }

    /// Downloads a module from the blob store.
    pub async fn get_blob(&self, digest: &str) -> Result<Vec<u8>, ClientError> {
        let response = self
            .send(
                self.http()
                    .get(format!("{}/blobs/sha256/{digest}", self.base())),
            )
            .await?;
        response
            .bytes()
            .await
            .map(|b| b.to_vec())
            .map_err(|e| self.unreachable(e))
    }

    /// Streams raw text (logs), chunk by chunk.
    pub async fn stream_text(
        &self,
        path: &str,
    ) -> Result<impl Stream<Item = Result<Vec<u8>, ClientError>>, ClientError> {
        let response = self
            .send(self.http().get(format!("{}{path}", self.base())))
            .await?;
        let base = self.base();
        Ok(response.bytes_stream().map(move |chunk| {
            chunk
                .map(|b| b.to_vec())
                .map_err(|e| ClientError::Unreachable {
                    url: base.clone(),
                    message: e.to_string(),
                })
        }))
    }

    /// Watches a collection from `revision`: a stream of events, ending when
    /// the connection does.
    pub async fn watch(
        &self,
        path: &str,
        query: &str,
        revision: &str,
    ) -> Result<impl Stream<Item = Result<WatchEvent, ClientError>>, ClientError> {
        let mut url = format!(
            "{}{path}?watch=true&resourceVersion={revision}",
            self.base()
        );
        if !query.is_empty() {
            url.push('&');
            url.push_str(query);
        }
        let response = self.send(self.http().get(url)).await?;
        let base = self.base();
        let at = self.current.load(Ordering::Relaxed) % self.servers.len();
        let client = self.clone();
        let lines = futures_util::stream::unfold(
            (response.bytes_stream(), Vec::<u8>::new()),
            move |(mut body, mut buffer)| {
                let base = base.clone();
                let client = client.clone();
                async move {
                    loop {
                        if let Some(end) = buffer.iter().position(|b| *b == b'\n') {
                            let line: Vec<u8> = buffer.drain(..=end).collect();
                            let event = serde_json::from_slice::<WatchEvent>(&line)
                                .map_err(|e| ClientError::Decode(e.to_string()));
                            return Some((event, (body, buffer)));
                        }
                        match tokio::time::timeout(WATCH_IDLE, body.next()).await {
                            Ok(Some(Ok(chunk))) => buffer.extend_from_slice(&chunk),
                            Ok(Some(Err(e))) => {
                                let error = ClientError::Unreachable {
                                    url: base.clone(),
                                    message: e.to_string(),
                                };
                                return Some((Err(error), (body, Vec::new())));
                            }
                            Ok(None) => return None,
                            Err(_) => {
                                client.move_on(at);
                                let error = ClientError::Unreachable {
                                    url: base.clone(),
                                    message: format!("the watch was silent for {WATCH_IDLE:?} (the server sends a bookmark every 5 s): taken as dead"),
                                };
                                return Some((Err(error), (body, Vec::new())));
                            }
                        }
                    }
                }
            },
        );
        Ok(lines)
    }
}
