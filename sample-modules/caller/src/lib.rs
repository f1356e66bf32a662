//! Calls a URL with an outgoing `wasi:http` request and answers with what it
//! got: the status and body, or 502 with the error the host gave (a refusal
//! included). The URL: the request's `?url=` query, else the `TARGET_URL`
//! environment variable (components of the wasi:http/proxy world see an
//! environment only where the host grants `wasi:cli/environment`), else
//! another workload by name, `http://hello.default.flotilla/`.

use wasi::http::outgoing_handler;
use wasi::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingRequest, ResponseOutparam, Scheme,
};

struct Caller;

/// GET `url` (`http://authority/path`): (status, body), or why not.
fn fetch(url: &str) -> Result<(u16, Vec<u8>), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url}: only http:// URLs"))?;
    let (authority, path) = match rest.split_once('/') {
        Some((authority, path)) => (authority, format!("/{path}")),
        None => (rest, "/".to_string()),
    };
    let request = OutgoingRequest::new(Fields::new());
    request.set_scheme(Some(&Scheme::Http)).map_err(|()| "scheme")?;
    request.set_authority(Some(authority)).map_err(|()| "authority")?;
    request.set_path_with_query(Some(&path)).map_err(|()| "path")?;
    let body = request.body().map_err(|()| "body")?;
    let pending = outgoing_handler::handle(request, None).map_err(|e| format!("{e:?}"))?;
    OutgoingBody::finish(body, None).map_err(|e| format!("{e:?}"))?;
    pending.subscribe().block();
    let response = pending
        .get()
        .ok_or("no response")?
        .map_err(|()| "response taken twice")?
        .map_err(|e| format!("{e:?}"))?;
    let status = response.status();
    let mut bytes = Vec::new();
    let incoming = response.consume().map_err(|()| "consume")?;
    let stream = incoming.stream().map_err(|()| "stream")?;
    while let Ok(chunk) = stream.blocking_read(64 * 1024) {
        bytes.extend_from_slice(&chunk);
    }
    Ok((status, bytes))
}

impl wasi::exports::http::incoming_handler::Guest for Caller {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let query = request.path_with_query().unwrap_or_default();
        let from_query = query
            .split_once("?url=")
            .map(|(_, url)| url.split('&').next().unwrap_or_default().to_string());
        let url = from_query
            .or_else(|| std::env::var("TARGET_URL").ok())
            .unwrap_or_else(|| "http://hello.default.flotilla/".to_string());
        match fetch(&url) {
            Ok((status, body)) => {
                let text = format!("{url} answered {status}: {}", String::from_utf8_lossy(&body));
                http_respond::text(out, 200, &text);
            }
            Err(why) => http_respond::text(out, 502, &format!("calling {url} failed: {why}\n")),
        }
    }
}

wasi::http::proxy::export!(Caller);
