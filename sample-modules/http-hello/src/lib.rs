//! A `wasi:http/incoming-handler` component that answers every request with
//! 200 `hello from flotilla`: the same contract as `wasmtime serve` and Spin.

use wasi::http::types::{IncomingRequest, ResponseOutparam};

struct Hello;

impl wasi::exports::http::incoming_handler::Guest for Hello {
    fn handle(_request: IncomingRequest, out: ResponseOutparam) {
        http_respond::text(out, 200, "hello from flotilla\n");
    }
}

wasi::http::proxy::export!(Hello);
