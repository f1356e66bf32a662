//! Reflects the request: method, path with query, headers and body.

use wasi::http::types::{IncomingRequest, Method, ResponseOutparam};

struct Echo;

fn method_name(method: &Method) -> String {
    match method {
        Method::Get => "GET".into(),
        Method::Head => "HEAD".into(),
        Method::Post => "POST".into(),
        Method::Put => "PUT".into(),
        Method::Delete => "DELETE".into(),
        Method::Connect => "CONNECT".into(),
        Method::Options => "OPTIONS".into(),
        Method::Trace => "TRACE".into(),
        Method::Patch => "PATCH".into(),
        Method::Other(other) => other.clone(),
    }
}

/// The whole request body.
fn read_body(request: &IncomingRequest) -> Vec<u8> {
    let mut body = Vec::new();
    let Ok(incoming) = request.consume() else {
        return body;
    };
    if let Ok(stream) = incoming.stream() {
        while let Ok(chunk) = stream.blocking_read(64 * 1024) {
            body.extend_from_slice(&chunk);
        }
    }
    body
}

impl wasi::exports::http::incoming_handler::Guest for Echo {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let mut text = format!(
            "{} {}\n",
            method_name(&request.method()),
            request.path_with_query().unwrap_or_default()
        );
        for (name, value) in request.headers().entries() {
            text.push_str(&format!("{name}: {}\n", String::from_utf8_lossy(&value)));
        }
        text.push('\n');
        text.push_str(&String::from_utf8_lossy(&read_body(&request)));
        http_respond::text(out, 200, &text);
    }
}

wasi::http::proxy::export!(Echo);
