//! A visit counter: a `wasi:http` handler that keeps its count in a
//! `wasi:keyvalue` bucket (`counter`, granted by the workload), so every
//! replica on a node (and every restart) shares it.
//!
//! - `GET /` increments `visits` and answers `visits: N`;
//! - `GET /open/NAME` opens bucket NAME and answers `opened` or the error
//!   (an ungranted bucket: `access-denied`);
//! - `PUT /big/BYTES` stores a value of BYTES bytes under `big` and answers
//!   `stored` or the error (too large, `quota-exceeded`).

/// `wasi:keyvalue` bindings, generated from host-api/wit (the `wasi` crate
/// gives the http ones; a module of their own keeps the names apart).
mod bindings {
    wit_bindgen::generate!({
        path: "../../host-api/wit",
        world: "flotilla:host/guest",
        generate_all,
    });
}

use bindings::wasi::keyvalue::{atomics, store};
use wasi::http::types::{IncomingRequest, ResponseOutparam};

struct Counter;

fn error(e: store::Error) -> String {
    match e {
        store::Error::NoSuchStore => "no-such-store".into(),
        store::Error::AccessDenied => "access-denied".into(),
        store::Error::Other(why) => why,
    }
}

impl wasi::exports::http::incoming_handler::Guest for Counter {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        let answer = if let Some(name) = path.strip_prefix("/open/") {
            store::open(name).map(|_| "opened".to_string()).map_err(error)
        } else if let Some(size) = path.strip_prefix("/big/") {
            let size: usize = size.parse().unwrap_or(0);
            store::open("counter")
                .and_then(|bucket| bucket.set("big", &vec![b'x'; size]))
                .map(|()| "stored".to_string())
                .map_err(error)
        } else {
            store::open("counter")
                .and_then(|bucket| atomics::increment(&bucket, "visits", 1))
                .map(|n| format!("visits: {n}"))
                .map_err(error)
        };
        match answer {
            Ok(text) => http_respond::text(out, 200, &format!("{text}\n")),
            Err(why) => http_respond::text(out, 500, &format!("{why}\n")),
        }
    }
}

wasi::http::proxy::export!(Counter);
