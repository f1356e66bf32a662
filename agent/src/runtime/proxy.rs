//! Serving a request with a `wasi:http/proxy` component (what `wasmtime
//! serve` and Spin run): the request becomes a `wasi:http` incoming-request
//! resource and the component's `incoming-handler.handle` is called on a
//! fresh instance.

use std::time::Instant;

use bytes::Bytes;
use http_body_util::BodyExt;
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::WasiHttpView;

use super::handler::{failed, plain_response, HandlerSpec, Served};
use super::module::LoadedModule;
use super::outcome::ExitReason;
use super::run::{drive, finish, Failure};
use super::state::{ComponentState, InstanceLimits};

/// Serves `request` with a fresh instance of `module` (a proxy component).
pub(super) async fn serve<B>(
    module: &LoadedModule,
    pre: &wasmtime_wasi_http::p2::bindings::ProxyPre<ComponentState>,
    request: http::Request<B>,
    spec: &HandlerSpec,
) -> Served
where
    B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let started = Instant::now();
    let mut wasi = WasiCtxBuilder::new();
    wasi.envs(&spec.env);
    for dir in &spec.dirs {
        let perms = if dir.read_only {
            wasmtime_wasi::FsPerms::ReadOnly
        } else {
            wasmtime_wasi::FsPerms::ReadWrite
        };
        if let Err(e) = wasi.preopened_dir(&dir.host, &dir.guest, perms) {
            return Served {
                response: plain_response(
                    500,
                    format!("cannot show {} to the handler: {e:#}\n", dir.guest),
                ),
                failure: None,
            };
        }
    }
    if let Some(log) = &spec.log {
        wasi.stdout(super::output::AppendStream(log.clone()));
        wasi.stderr(super::output::AppendStream(log.clone()));
    }
    let limits = InstanceLimits::new(
        spec.limits.memory_bytes,
        spec.limits.cpu_millis,
        spec.usage.clone(),
    );
    let meter = limits.cpu.clone();
    let mut store = ComponentState::new_store(&module.runtime.engine, &mut wasi, limits);
    store.data_mut().host = spec.host.clone();
    let request = request.map(|body| {
        body.map_err(|e| {
            wasmtime_wasi_http::p2::bindings::http::types::ErrorCode::InternalError(Some(
                e.into().to_string(),
            ))
        })
        .boxed_unsync()
    });
    let (sender, receiver) = tokio::sync::oneshot::channel();
    let resources = store
        .data_mut()
        .http()
        .new_incoming_request(Scheme::Http, request)
        .and_then(|req| {
            let out = store.data_mut().http().new_response_outparam(sender)?;
            Ok((req, out))
        });
    let (req, out) = match resources {
        Ok(pair) => pair,
        Err(e) => {
            return Served {
                response: plain_response(
                    500,
                    format!("cannot pass the request to {}: {e:#}\n", module.name),
                ),
                failure: None,
            }
        }
    };
    let pre = pre.clone();
    let timeout = spec.limits.timeout;
    let runtime = module.runtime.clone();
    // The guest runs in its own task: it may keep streaming the body
    // after it has set the response.
    let run = tokio::spawn(async move {
        let _running = runtime.ticker.enter();
        let handle = async {
            let proxy = pre
                .instantiate_async(&mut store)
                .await
                .map_err(Failure::Instantiate)?;
            proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut store, req, out)
                .await
                .map_err(Failure::Run)?;
            Ok(0)
        };
        let result = drive(handle, &meter, timeout).await;
        finish(&mut store, result, &meter, started, timeout)
    });
    match receiver.await {
        Ok(Ok(response)) => Served {
            response: response.map(|body| body.map_err(Into::into).boxed_unsync()),
            failure: None,
        },
        Ok(Err(code)) => Served {
            response: plain_response(
                500,
                format!("handler {} answered with error {code:?}\n", module.name),
            ),
            failure: None,
        },
        // The guest ended without setting a response: say why.
        Err(_) => match run.await {
            Ok(outcome) if outcome.reason != ExitReason::Completed => failed(outcome, &module.name),
            Ok(_) => Served {
                response: plain_response(
                    500,
                    format!(
                        "handler {} returned without setting a response\n",
                        module.name
                    ),
                ),
                failure: None,
            },
            Err(e) => Served {
                response: plain_response(
                    500,
                    format!("handler {} task failed: {e}\n", module.name),
                ),
                failure: None,
            },
        },
    }
}
