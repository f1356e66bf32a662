//! The node's ingress: an HTTP/1.1 listener that routes each request by
//! `Host` and path prefix to a replica of an `http` workload — the local one
//! with the fewest requests outstanding — and serves it with a fresh
//! instance. Requests no route matches get a 404 that says how to add one.

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::endpoints::LocalEndpoints;
use crate::runtime::{plain_response, ResponseBody};

/// Serves the ingress on `listener` until the process ends.
pub async fn serve(listener: TcpListener, endpoints: Arc<LocalEndpoints>) {
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
        let endpoints = endpoints.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let endpoints = endpoints.clone();
                async move { Ok::<_, Infallible>(handle(&endpoints, request).await) }
            });
            if let Err(e) = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!("ingress connection: {e}");
            }
        });
    }
}

/// The host a request is for: the `Host` header (or the URI's authority),
/// without its port.
fn host_of(request: &http::Request<Incoming>) -> String {
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

async fn handle(
    endpoints: &LocalEndpoints,
    request: http::Request<Incoming>,
) -> http::Response<ResponseBody> {
    let host = host_of(&request);
    let path = request.uri().path().to_string();
    let Some(workload) = endpoints.route(&host, &path) else {
        return plain_response(
            404,
            format!(
                "no workload serves host {host:?} path {path:?} on this node: give an execution: http workload routes: [{{host: {host}, pathPrefix: /}}]\n"
            ),
        );
    };
    let Some(replica) = endpoints.pick(&workload) else {
        return plain_response(
            503,
            format!("workload {workload} has no ready replica: see flotilla get instances\n"),
        );
    };
    replica.outstanding.fetch_add(1, Ordering::Relaxed);
    let served = match replica.slots.acquire().await {
        Ok(_slot) => Some(replica.module.serve(request, &replica.spec).await),
        Err(_) => None,
    };
    replica.outstanding.fetch_sub(1, Ordering::Relaxed);
    let Some(served) = served else {
        return plain_response(503, format!("workload {workload}: replica stopped\n"));
    };
    replica.served.fetch_add(1, Ordering::Relaxed);
    if let Some(failure) = &served.failure {
        if let Some(log) = &replica.spec.log {
            log.note(&format!(
                "[flotilla] request {path} failed: {} {}",
                failure.reason,
                failure
                    .trap
                    .clone()
                    .or_else(|| failure.message.clone())
                    .unwrap_or_default()
            ));
        }
        (replica.on_failure)(failure);
    }
    served.response
}
