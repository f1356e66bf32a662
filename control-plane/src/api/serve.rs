//! The API's listener: TLS only. A client that speaks plain HTTP gets a
//! 400 that says to use https://, never an API answer; a client
//! certificate the CA signed (a node's) travels with each request as its
//! [`Peer`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use flotilla_trust::names::Presented;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower_service::Service;

/// Connections served at once; more wait in the kernel's backlog.
const MAX_CONNECTIONS: usize = 4096;
/// Connections one address may hold (handshakes included): a node needs a
/// handful, `flotilla up`'s clients share 127.0.0.1.
const MAX_CONNECTIONS_PER_PEER: usize = 512;
/// Longest wait for a request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// Requests one HTTP/2 connection may have under way at once (watches and
/// follows are capped per client besides, by the stream limiter).
const MAX_STREAMS_PER_CONNECTION: u32 = 128;
/// How often an idle HTTP/2 connection is pinged (a dead peer's streams
/// are then let go).
const KEEPALIVE_EVERY: Duration = Duration::from_secs(30);

/// Serves `router` on `listener` over TLS until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Arc<rustls::ServerConfig>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let acceptor = TlsAcceptor::from(tls);
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let per_peer = flotilla_trust::connections::PerPeer::new(MAX_CONNECTIONS_PER_PEER);
    tokio::pin!(shutdown);
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let (stream, address) = tokio::select! {
            () = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait, do not spin.
                    tracing::warn!("API: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Some(held) = per_peer.hold(address.ip()) else {
            tracing::debug!(
                "API: {address} holds {MAX_CONNECTIONS_PER_PEER} connections already; refusing one"
            );
            continue;
        };
        let _ = stream.set_nodelay(true);
        let acceptor = acceptor.clone();
        let router = router.clone();
        tokio::spawn(async move {
            let _permit = (permit, held);
            let (session, peer) = match flotilla_trust::tls::accept(&acceptor, stream).await {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::debug!("API connection from {address}: {e}");
                    return;
                }
            };
            let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
                // An early answer (401, 403, 413…) waits until the body the
                // handler left unread is drained (bounded), so an HTTP/2
                // client gets it whole rather than as a reset stream.
                let (request, leftover) = flotilla_http::drained(request);
                let mut request = request.map(axum::body::Body::new);
                request.extensions_mut().insert(ConnectInfo(address));
                request
                    .extensions_mut()
                    .insert::<Option<Presented>>(peer.clone());
                let answer = router.clone().call(request);
                async move {
                    let response = answer.await;
                    leftover.finish().await;
                    response
                }
            });
            // HTTP/2 for clients that offer it (browsers: the dashboard
            // holds several watches at once, more than HTTP/1.1's six
            // connections per site allow), HTTP/1.1 for the rest.
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT);
            builder
                .http2()
                .timer(TokioTimer::new())
                .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION)
                .keep_alive_interval(Some(KEEPALIVE_EVERY));
            if let Err(e) = builder
                .serve_connection(TokioIo::new(session), service)
                .await
            {
                tracing::debug!("API connection from {address}: {e}");
            }
        });
    }
}

/// The address a listener is bound to, as a URL.
pub fn url_of(address: SocketAddr) -> String {
    format!("https://{address}")
}
