//! A `wasi:http/incoming-handler` component that answers `/env/NAME` with
//! `NAME=VALUE` from its environment (`wasi:cli/environment`, which
//! Flotilla gives handlers as `wasmtime serve -Scli` does; 404 if unset) and
//! every other request with 200 `hello from flotilla`: the same contract as
//! `wasmtime serve` and Spin.

use wasi::http::types::{IncomingRequest, ResponseOutparam};

struct Hello;

impl wasi::exports::http::incoming_handler::Guest for Hello {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        if let Some(name) = path.strip_prefix("/env/") {
            let found = wasi::cli::environment::get_environment()
                .into_iter()
                .find(|(key, _)| key == name);
            return match found {
                Some((key, value)) => http_respond::text(out, 200, &format!("{key}={value}\n")),
                None => http_respond::text(out, 404, &format!("{name} is not set\n")),
            };
        }
        http_respond::text(out, 200, "hello from flotilla\n");
    }
}

wasi::http::proxy::export!(Hello);
