//! What the sample HTTP handlers share: sending a whole response.

use wasi::http::types::{Fields, OutgoingBody, OutgoingResponse, ResponseOutparam};

/// Answers with `status`, `headers` and `body`, in one piece.
pub fn respond(out: ResponseOutparam, status: u16, headers: &[(String, Vec<u8>)], body: &[u8]) {
    let fields = Fields::new();
    for (name, value) in headers {
        let _ = fields.append(name, value);
    }
    let response = OutgoingResponse::new(fields);
    let _ = response.set_status_code(status);
    let Ok(outgoing) = response.body() else {
        return;
    };
    ResponseOutparam::set(out, Ok(response));
    if let Ok(stream) = outgoing.write() {
        // blocking_write_and_flush takes at most 4096 bytes per call.
        for chunk in body.chunks(4096) {
            if stream.blocking_write_and_flush(chunk).is_err() {
                break;
            }
        }
    }
    let _ = OutgoingBody::finish(outgoing, None);
}

/// A `text/plain` answer.
pub fn text(out: ResponseOutparam, status: u16, body: &str) {
    let headers = [("content-type".to_string(), b"text/plain".to_vec())];
    respond(out, status, &headers, body.as_bytes());
}
