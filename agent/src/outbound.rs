//! Outgoing requests of `http` guests: service discovery and default deny.
//!
//! `http://<workload>.<namespace>.flotilla/...` is resolved to that
//! workload's Ready replicas and balanced like ingress traffic; a `host:port`
//! listed in the workload's grants is called directly. Anything else — an
//! ungranted workload or host, HTTPS, an unknown name — is refused with
//! `HTTP-request-denied` (what the guest sees) and a `OutboundDenied` Event
//! that names the grant to add.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use flotilla_spec::event::ObjectRef;
use flotilla_spec::workload::{granted_workload, Grants};
use http_body_util::{BodyExt, Full, Limited};
use wasmtime_wasi_http::{Error as HttpError, WasiBody};

use crate::ingress::Ingress;
use crate::report::{Reporter, Severity};
use crate::runtime::Outbound;

/// Suffix of the names guests call workloads by.
pub const DISCOVERY_SUFFIX: &str = ".flotilla";

/// Largest request body a guest may send.
const MAX_OUTGOING_BODY: usize = 16 << 20;

/// The outgoing policy of one replica.
pub struct Discovery {
    /// The calling workload's namespace (for unqualified grants).
    pub namespace: String,
    /// The calling workload, `namespace/name`: named to the node that
    /// serves the call, which checks its grants too.
    pub workload: String,
    /// What it may call.
    pub grants: Grants,
    /// Where calls to workloads go.
    pub ingress: Arc<Ingress>,
    /// For refusal Events.
    pub reporter: Reporter,
    /// The calling instance.
    pub about: ObjectRef,
}

type Pending = Pin<Box<dyn Future<Output = Result<http::Response<WasiBody>, HttpError>> + Send>>;

impl Discovery {
    /// `namespace/name` if `host` is a workload name, e.g. `hello.default.flotilla`.
    fn workload_of(host: &str) -> Option<String> {
        let name = host.strip_suffix(DISCOVERY_SUFFIX)?;
        let (workload, namespace) = name.split_once('.')?;
        Some(format!("{namespace}/{workload}"))
    }

    fn grants_workload(&self, key: &str) -> bool {
        self.grants
            .workloads
            .iter()
            .any(|g| granted_workload(&self.namespace, g) == key)
    }

    fn refuse(&self, what: String, fix: String) -> Pending {
        tracing::info!("outgoing request refused: {what}");
        self.reporter.event(
            &self.about,
            Severity::Warning,
            "OutboundDenied",
            format!("Refused an outgoing request to {what}: {fix}"),
        );
        Box::pin(async { Err(HttpError::HttpRequestDenied) })
    }
}

impl Outbound for Discovery {
    fn send(&self, request: http::Request<WasiBody>) -> Pending {
        let authority = request
            .uri()
            .authority()
            .map(|a| a.as_str().to_ascii_lowercase())
            .unwrap_or_default();
        let host = authority
            .rsplit_once(':')
            .map_or(authority.as_str(), |(h, _)| h)
            .to_string();
        if request.uri().scheme_str() != Some("http") {
            return self.refuse(
                format!("{}", request.uri()),
                "only plain http:// is supported for outgoing requests".into(),
            );
        }
        if let Some(workload) = Self::workload_of(&host) {
            if !self.grants_workload(&workload) {
                return self.refuse(
                    format!("workload {workload}"),
                    "add it to spec.grants.workloads of this workload".to_string(),
                );
            }
            let (ingress, caller) = (self.ingress.clone(), self.workload.clone());
            return Box::pin(async move {
                let request = collect(request).await?;
                let response = ingress.call(&caller, &workload, request).await;
                Ok(response.map(|b| {
                    b.map_err(|e| HttpError::InternalError(Some(e.to_string())))
                        .boxed_unsync()
                }))
            });
        }
        if !self
            .grants
            .hosts
            .iter()
            .any(|h| h.eq_ignore_ascii_case(&authority))
        {
            return self.refuse(
                format!("host {authority}"),
                format!("add {authority:?} to spec.grants.hosts, or call a workload as http://<name>.<namespace>.flotilla/"),
            );
        }
        let ingress = self.ingress.clone();
        Box::pin(async move {
            let request = collect(request).await?;
            let response = ingress
                .send_direct(request)
                .await
                .map_err(|e| HttpError::InternalError(Some(e)))?;
            Ok(response.map(|b| {
                b.map_err(|e| HttpError::InternalError(Some(e.to_string())))
                    .boxed_unsync()
            }))
        })
    }
}

/// The request with its whole body in memory (it may be retried).
async fn collect(
    request: http::Request<WasiBody>,
) -> Result<http::Request<Full<Bytes>>, HttpError> {
    let (parts, body) = request.into_parts();
    let bytes = Limited::new(body, MAX_OUTGOING_BODY)
        .collect()
        .await
        .map_err(|_| HttpError::HttpRequestBodySize(None))?
        .to_bytes();
    Ok(http::Request::from_parts(parts, Full::new(bytes)))
}
