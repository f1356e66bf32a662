//! `kv-bench N`: times N `set`s then N `get`s of 100-byte values in bucket
//! `bench` through `wasi:keyvalue`, each measured in the guest, and prints
//! `set p50 p99 get p50 p99` in nanoseconds (benches/src/bin/kv-bench.rs
//! runs it beside the same operations called natively).
//!
//! `kv-bench increment N [BUCKET]`: N atomic increments of key `count` in
//! BUCKET (default `counters`), and prints `increment p50 p99 last total`
//! (times in nanoseconds; `last` is the value the last increment returned):
//! the fleet's shared-counter test and the cluster backend's bench.

wit_bindgen::generate!({
    path: "../../host-api/wit",
    world: "flotilla:host/command",
    generate_all,
});

use std::time::Instant;
use wasi::keyvalue::{atomics, store};

struct Bench;

export!(Bench);

fn percentiles(mut ns: Vec<u64>) -> (u64, u64) {
    ns.sort_unstable();
    let at = |q: f64| ns[((ns.len() as f64 - 1.0) * q).round() as usize];
    (at(0.5), at(0.99))
}

impl exports::wasi::cli::run::Guest for Bench {
    fn run() -> Result<(), ()> {
        let args: Vec<String> = std::env::args().collect();
        if args.get(1).map(String::as_str) == Some("increment") {
            let n: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(1000);
            return increments(n, args.get(3).map_or("counters", String::as_str));
        }
        let n: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(1000);
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

fn increments(n: usize, bucket: &str) -> Result<(), ()> {
    let bucket = store::open(bucket).map_err(|e| eprintln!("open: {e:?}"))?;
    let mut times = Vec::with_capacity(n);
    let mut last = 0;
    let began = Instant::now();
    for _ in 0..n {
        let started = Instant::now();
        last = atomics::increment(&bucket, "count", 1).map_err(|e| eprintln!("increment: {e:?}"))?;
        times.push(started.elapsed().as_nanos() as u64);
    }
    let (p50, p99) = percentiles(times);
    let total = began.elapsed().as_nanos();
    println!("increment {p50} {p99} {last} {total}");
    Ok(())
}
