//! HTTP handlers: a fresh, pre-linked instance per request, under the same
//! memory/CPU/deadline limits as any run.
//!
//! Two kinds of handler:
//! - `wasi:http/proxy` components (`proxy.rs`);
//! - preview-1 core modules through WAGI, the CGI convention (`wagi.rs`).
//!
//! Whatever the guest does, the caller gets a response: a trap or a refused
//! memory growth is a 500, a passed deadline a 504, each with the reason in
//! its body and in [`Served::failure`] for logs and events.

use bytes::Bytes;
use wasmtime_wasi_http::{WasiHttpCtxView, WasiHttpView};

use super::handler::{plain_response, HandlerSpec, Served};
use super::module::{LoadedModule, Prepared};
use super::state::ComponentState;

/// Components get `wasi:http` (only the handlers' linker provides it).
impl WasiHttpView for ComponentState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.host.outgoing,
        }
    }
}

impl LoadedModule {
    /// Whether this module can serve HTTP: a `wasi:http/proxy` component, or
    /// a command core module (WAGI).
    pub fn is_http_handler(&self) -> bool {
        match &self.prepared {
            Prepared::Proxy(_) => true,
            Prepared::Core(pre) => pre.module().get_export("_start").is_some(),
            Prepared::Component(_) => false,
        }
    }

    /// Serves one request with a fresh instance.
    pub async fn serve<B>(&self, request: http::Request<B>, spec: &HandlerSpec) -> Served
    where
        B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        if let Err(e) = self.check_grants(&spec.host.granted) {
            return Served {
                response: plain_response(500, format!("{e}\n")),
                failure: None,
            };
        }
        match &self.prepared {
            Prepared::Proxy(pre) => super::proxy::serve(self, pre, request, spec).await,
            Prepared::Core(_) => super::wagi::serve(self, request, spec).await,
            Prepared::Component(_) => Served {
                response: plain_response(
                    500,
                    format!(
                        "{} is a command component (wasi:cli/run), not an HTTP handler\n",
                        self.name
                    ),
                ),
                failure: None,
            },
        }
    }
}
