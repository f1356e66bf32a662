//! A misbehaving handler, for the runtime's per-request limits: `/trap` hits
//! `unreachable`, `/hog` allocates until refused, `/loop` never returns;
//! anything else is answered 200.

use wasi::http::types::{IncomingRequest, ResponseOutparam};

struct Trap;

impl wasi::exports::http::incoming_handler::Guest for Trap {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        match request.path_with_query().unwrap_or_default().as_str() {
            "/trap" => std::process::abort(),
            "/hog" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "/loop" => {
                let mut n = 0u64;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            _ => http_respond::text(out, 200, "fine\n"),
        }
    }
}

wasi::http::proxy::export!(Trap);
