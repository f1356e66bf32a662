//! `wasi:http/outgoing-handler`: the policy hook every outgoing request of
//! an http handler goes through. The interface is part of the
//! `wasi:http/proxy` world, so every handler links it; the embedder's
//! [`Outbound`] decides per request (grants, service discovery), and
//! without one every request is refused (`HTTP-request-denied`): default
//! deny.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use wasmtime_wasi_http::WasiBody;

use crate::{Capability, Grant};

/// The capability: linked for every handler, each request checked.
pub const CAPABILITY: Capability = Capability {
    name: "wasi:http/outgoing-handler",
    interfaces: &["wasi:http/outgoing-handler"],
    core_modules: &[],
    grant: Grant::PerUse(
        "add the workloads it calls to spec.grants.workloads, other hosts to spec.grants.hosts",
    ),
};

/// A response to an outgoing request, or the error the guest sees.
pub type OutboundResult = Result<http::Response<WasiBody>, wasmtime_wasi_http::Error>;

/// Where a handler's outgoing requests go.
pub trait Outbound: Send + Sync {
    /// Sends `request`, or refuses it with the error the guest sees.
    fn send(
        &self,
        request: http::Request<WasiBody>,
    ) -> Pin<Box<dyn Future<Output = OutboundResult> + Send>>;
}

/// The `wasi:http` hooks of one instance: outgoing requests go to its
/// [`Outbound`], or are refused.
#[derive(Clone, Default)]
pub struct Hooks {
    /// The instance's policy; `None`: every request is refused.
    pub outbound: Option<Arc<dyn Outbound>>,
}

/// What finishes sending a request's body (nothing to do: the policy
/// forwarded it whole).
type Done = Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>;

impl wasmtime_wasi_http::WasiHttpHooks for Hooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        _options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Done,
    ) -> Box<
        dyn Future<Output = Result<(http::Response<WasiBody>, Done), wasmtime_wasi_http::Error>>
            + Send,
    > {
        let outbound = self.outbound.clone();
        Box::new(async move {
            let Some(outbound) = outbound else {
                return Err(wasmtime_wasi_http::Error::HttpRequestDenied);
            };
            let response = outbound.send(request).await?;
            let done: Done = Box::new(async { Ok(()) });
            Ok((response, done))
        })
    }
}
