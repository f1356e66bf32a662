//! A typed client of the Flotilla API, shared by the CLI and the agents.
//!
//! It speaks the paths of `flotilla-control-plane`'s API, sends the bearer
//! token, turns `Status` error bodies back into messages, and reads watch
//! streams line by line.

use std::time::Duration;

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

/// A connection to one API server.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

/// The collection path of a kind's plural, namespaced or not.
pub fn collection_path(plural: &str, namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) => format!("/apis/flotilla.dev/v1/namespaces/{ns}/{plural}"),
        None => format!("/apis/flotilla.dev/v1/{plural}"),
    }
}

impl Client {
    /// A client of the server at `base` (e.g. `http://127.0.0.1:7443`).
    pub fn new(base: &str, token: &str) -> Result<Self, ClientError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .no_proxy()
            .build()
            .map_err(|e| ClientError::Decode(e.to_string()))?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_string(),
            token: token.to_string(),
        })
    }

    /// The server URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn unreachable(&self, e: reqwest::Error) -> ClientError {
        let mut message = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            message = format!("{message}: {s}");
            source = s.source();
        }
        ClientError::Unreachable {
            url: self.base.clone(),
            message,
        }
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ClientError> {
        let response = request
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
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
        self.send(request)
            .await?
            .json()
            .await
            .map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// GET a path as JSON.
    pub async fn get(&self, path: &str) -> Result<Value, ClientError> {
        self.json(self.http.get(format!("{}{path}", self.base)))
            .await
    }

    /// Lists a collection (`query` like `fieldSelector=spec.nodeName=n1`).
    pub async fn list(&self, path: &str, query: &str) -> Result<ObjectList, ClientError> {
        let url = if query.is_empty() {
            format!("{}{path}", self.base)
        } else {
            format!("{}{path}?{query}", self.base)
        };
        let list: Value = self.json(self.http.get(url)).await?;
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
            self.http
                .post(format!("{}{collection}", self.base))
                .json(object),
        )
        .await
    }

    /// PUT an object (or its `/status`).
    pub async fn replace(&self, path: &str, object: &Value) -> Result<Value, ClientError> {
        self.json(self.http.put(format!("{}{path}", self.base)).json(object))
            .await
    }

    /// PATCH an object with a JSON merge patch (RFC 7386).
    pub async fn merge_patch(&self, path: &str, patch: &Value) -> Result<Value, ClientError> {
        self.json(
            self.http
                .patch(format!("{}{path}", self.base))
                .header("content-type", "application/merge-patch+json")
                .json(patch),
        )
        .await
    }

    /// DELETE an object.
    pub async fn delete(&self, path: &str) -> Result<Value, ClientError> {
        self.json(self.http.delete(format!("{}{path}", self.base)))
            .await
    }

    /// Uploads a module to the blob store.
    pub async fn put_blob(&self, digest: &str, bytes: Vec<u8>) -> Result<(), ClientError> {
        let head = self
            .http
            .head(format!("{}/blobs/sha256/{digest}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        if head.status().is_success() {
            return Ok(());
        }
        self.send(
            self.http
                .put(format!("{}/blobs/sha256/{digest}", self.base))
                .body(bytes),
        )
        .await
        .map(drop)
    }

    /// Downloads a module from the blob store.
    pub async fn get_blob(&self, digest: &str) -> Result<Vec<u8>, ClientError> {
        let response = self
            .send(
                self.http
                    .get(format!("{}/blobs/sha256/{digest}", self.base)),
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
            .send(self.http.get(format!("{}{path}", self.base)))
            .await?;
        let base = self.base.clone();
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
        let mut url = format!("{}{path}?watch=true&resourceVersion={revision}", self.base);
        if !query.is_empty() {
            url.push('&');
            url.push_str(query);
        }
        let response = self.send(self.http.get(url)).await?;
        let base = self.base.clone();
        let lines = futures_util::stream::unfold(
            (response.bytes_stream(), Vec::<u8>::new()),
            move |(mut body, mut buffer)| {
                let base = base.clone();
                async move {
                    loop {
                        if let Some(end) = buffer.iter().position(|b| *b == b'\n') {
                            let line: Vec<u8> = buffer.drain(..=end).collect();
                            let event = serde_json::from_slice::<WatchEvent>(&line)
                                .map_err(|e| ClientError::Decode(e.to_string()));
                            return Some((event, (body, buffer)));
                        }
                        match body.next().await {
                            Some(Ok(chunk)) => buffer.extend_from_slice(&chunk),
                            Some(Err(e)) => {
                                let error = ClientError::Unreachable {
                                    url: base.clone(),
                                    message: e.to_string(),
                                };
                                return Some((Err(error), (body, Vec::new())));
                            }
                            None => return None,
                        }
                    }
                }
            },
        );
        Ok(lines)
    }
}
