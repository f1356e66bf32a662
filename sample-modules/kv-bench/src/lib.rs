//! `kv-bench N`: times N `set`s then N `get`s of 100-byte values in bucket
//! `bench` through `wasi:keyvalue`, each measured in the guest, and prints
//! `set p50 p99 get p50 p99` in nanoseconds (benches/src/bin/kv-bench.rs
//! runs it beside the same operations called natively).

wit_bindgen::generate!({
    path: "../../host-api/wit",
    world: "flotilla:host/command",
    generate_all,
});

use std::time::Instant;
use wasi::keyvalue::store;

struct Bench;

export!(Bench);

fn percentiles(mut ns: Vec<u64>) -> (u64, u64) {
    ns.sort_unstable();
    let at = |q: f64| ns[((ns.len() as f64 - 1.0) * q).round() as usize];
    (at(0.5), at(0.99))
}

impl exports::wasi::cli::run::Guest for Bench {
    fn run() -> Result<(), ()> {
        let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(1000);
        let bucket = store::open("bench").map_err(|e| eprintln!("open: {e:?}"))?;
        let value = vec![b'v'; 100];
        let mut sets = Vec::with_capacity(n);
        for i in 0..n {
            let started = Instant::now();
            bucket.set(&format!("key-{i}"), &value).map_err(|e| eprintln!("set: {e:?}"))?;
            sets.push(started.elapsed().as_nanos() as u64);
        }
        let mut gets = Vec::with_capacity(n);
        for i in 0..n {
            let started = Instant::now();
            let found = bucket.get(&format!("key-{i}")).map_err(|e| eprintln!("get: {e:?}"))?;
            gets.push(started.elapsed().as_nanos() as u64);
            if found.is_none() {
                eprintln!("key-{i} missing");
                return Err(());
            }
        }
        let (s50, s99) = percentiles(sets);
        let (g50, g99) = percentiles(gets);
        println!("set {s50} {s99} get {g50} {g99}");
        Ok(())
    }
}
