//! `kv-bench [MODULES_DIR] [N] [ROUNDS]`: `wasi:keyvalue` get/set latency as
//! a guest sees it (the `kv-bench` component, run by Flotilla's runtime,
//! timing each call inside the guest), for both backends, beside the same
//! operations called natively (no Wasm):
//!
//! - `node`: the guest on `SqliteKv`, `SqliteKv` itself, and SQLite directly
//!   (rusqlite, same schema and pragmas), each round on a fresh store file;
//! - `cluster`: the guest on `ClusterKv`, and `ClusterKv` itself, against a
//!   real `flotilla server` (target/release/flotilla, started here on
//!   loopback in a temporary folder) reached over TLS with the admin token.
//!
//! All five alternate, round by round. Prints the median over the rounds
//! of each side's p50 and p99, in microseconds, and the ratios.

use std::sync::Arc;
use std::time::Instant;

use flotilla_agent::kv_cluster::ClusterKv;
use flotilla_agent::runtime::host_api::keyvalue::{Backend, BucketGrant, KeyValueCtx};
use flotilla_agent::runtime::host_api::HostCtx;
use flotilla_agent::runtime::{CaptureBuffer, RunSpec, Runtime, RuntimeConfig, Stdio};
use flotilla_kv::SqliteKv as NodeKv;

/// p50 and p99 of set, then of get, in nanoseconds.
type Sample = [u64; 4];

fn percentiles(mut ns: Vec<u64>) -> (u64, u64) {
    ns.sort_unstable();
    let at = |q: f64| ns[((ns.len() as f64 - 1.0) * q).round() as usize];
    (at(0.5), at(0.99))
}

fn timed(n: usize, mut op: impl FnMut(usize)) -> Vec<u64> {
    (0..n)
        .map(|i| {
            let started = Instant::now();
            op(i);
            started.elapsed().as_nanos() as u64
        })
        .collect()
}

fn sample(sets: Vec<u64>, gets: Vec<u64>) -> Sample {
    let (s50, s99) = percentiles(sets);
    let (g50, g99) = percentiles(gets);
    [s50, s99, g50, g99]
}

fn native(kv: &dyn Backend, n: usize) -> Sample {
    let value = vec![b'v'; 100];
    let quota = 1 << 30;
    let sets = timed(n, |i| {
        let pairs = [(format!("key-{i}"), value.clone())];
        kv.set_many("bench/bench", &pairs, quota).expect("set");
    });
    let gets = timed(n, |i| {
        kv.get("bench/bench", &format!("key-{i}"))
            .expect("get")
            .expect("found");
    });
    sample(sets, gets)
}

fn sqlite(path: &std::path::Path, n: usize) -> Sample {
    let db = rusqlite::Connection::open(path).expect("open");
    db.pragma_update(None, "journal_mode", "WAL").expect("wal");
    db.pragma_update(None, "synchronous", "NORMAL")
        .expect("sync");
    db.execute_batch(
        "CREATE TABLE kv (bucket TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL,
         PRIMARY KEY (bucket, key)) WITHOUT ROWID",
    )
    .expect("schema");
    let value = vec![b'v'; 100];
    let sets = timed(n, |i| {
        db.prepare_cached(
            "INSERT INTO kv (bucket, key, value) VALUES ('b', ?1, ?2)
             ON CONFLICT (bucket, key) DO UPDATE SET value = excluded.value",
        )
        .and_then(|mut q| q.execute(rusqlite::params![format!("key-{i}"), value]))
        .expect("insert");
    });
    let gets = timed(n, |i| {
        db.prepare_cached("SELECT value FROM kv WHERE bucket = 'b' AND key = ?1")
            .and_then(|mut q| q.query_row([format!("key-{i}")], |r| r.get::<_, Vec<u8>>(0)))
            .expect("select");
    });
    sample(sets, gets)
}

fn guest(
    tokio: &tokio::runtime::Runtime,
    runtime: &Arc<Runtime>,
    module: &std::path::Path,
    kv: Arc<dyn Backend>,
    n: usize,
) -> Sample {
    let loaded = runtime.load_file(module).expect("kv-bench.component.wasm");
    let out = CaptureBuffer::new(4096);
    let bucket = BucketGrant {
        name: "bench".into(),
        id: "bench/bench".into(),
        backend: kv,
        quota: 1 << 30,
    };
    let spec = RunSpec {
        args: vec![n.to_string()],
        stdout: Stdio::Capture(out.clone()),
        stderr: Stdio::Inherit,
        host: HostCtx {
            granted: ["wasi:keyvalue".to_string()].into(),
            keyvalue: KeyValueCtx::new(vec![bucket], None),
            ..HostCtx::default()
        },
        ..RunSpec::default()
    };
    let outcome = tokio.block_on(loaded.run(spec)).expect("run");
    let text = String::from_utf8_lossy(&out.contents()).to_string();
    let numbers: Vec<u64> = text
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    assert_eq!(numbers.len(), 4, "{outcome:?}: {text}");
    [numbers[0], numbers[1], numbers[2], numbers[3]]
}

fn median(mut values: Vec<u64>) -> u64 {
    values.sort_unstable();
    values[values.len() / 2]
}

/// A `flotilla server` on loopback in a temporary folder, killed on drop.
struct Server {
    child: std::process::Child,
    dir: tempfile::TempDir,
    base: String,
}

impl Server {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("tmp");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port")
            .port();
        let flotilla = std::env::current_exe()
            .expect("exe")
            .with_file_name("flotilla");
        let child = std::process::Command::new(&flotilla)
            .args([
                "server",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--data-dir",
            ])
            .arg(dir.path().join("data"))
            .env("FLOTILLA_CONFIG", dir.path().join("config.yaml"))
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("{}: {e} (cargo build --release first)", flotilla.display())
            });
        let token = dir.path().join("data/admin-token");
        let started = Instant::now();
        while !token.exists() {
            assert!(started.elapsed().as_secs() < 30, "the server did not start");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Self {
            child,
            dir,
            base: format!("https://127.0.0.1:{port}"),
        }
    }

    fn client(&self) -> flotilla_client::Client {
        let read = |name: &str| {
            std::fs::read_to_string(self.dir.path().join("data").join(name)).expect(name)
        };
        flotilla_client::Client::new(
            &self.base,
            flotilla_client::Credentials {
                ca_pem: read("pki/ca.crt"),
                token: Some(read("admin-token").trim().to_string()),
                identity: None,
            },
        )
        .expect("client")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let modules = args
        .next()
        .unwrap_or_else(|| "target/sample-modules".into());
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(2000);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let module = std::path::Path::new(&modules).join("kv-bench.component.wasm");
    let runtime = Runtime::new(RuntimeConfig {
        max_instances: 4,
        ..RuntimeConfig::default()
    })
    .expect("runtime");
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio");
    let server = Server::start();
    let cluster: Arc<dyn Backend> = Arc::new(ClusterKv::new(server.client()));
    // Native calls of the cluster backend wait on the runtime from here.
    let _entered = tokio.enter();
    // Warm-up: compile the component, touch SQLite once, connect.
    let warm = tempfile::tempdir().expect("tmp");
    let kv = Arc::new(NodeKv::open(&warm.path().join("kv.db"), "bench store").expect("kv"));
    guest(&tokio, &runtime, &module, kv.clone(), 100);
    native(kv.as_ref(), 100);
    sqlite(&warm.path().join("raw.db"), 100);
    guest(&tokio, &runtime, &module, cluster.clone(), 100);
    native(cluster.as_ref(), 100);

    let mut results: [Vec<Sample>; 5] = Default::default();
    for _ in 0..rounds {
        let dir = tempfile::tempdir().expect("tmp");
        let fresh = || {
            Arc::new(
                NodeKv::open(
                    &dir.path().join(format!("{}.db", rand_name())),
                    "bench store",
                )
                .expect("kv"),
            )
        };
        results[0].push(guest(&tokio, &runtime, &module, fresh(), n));
        results[1].push(native(fresh().as_ref(), n));
        results[2].push(sqlite(&dir.path().join(format!("{}.db", rand_name())), n));
        results[3].push(guest(&tokio, &runtime, &module, cluster.clone(), n));
        results[4].push(native(cluster.as_ref(), n));
    }
    let names = [
        "guest, node backend",
        "native SqliteKv (node)",
        "SQLite (rusqlite)",
        "guest, cluster backend",
        "native ClusterKv (API)",
    ];
    let medians: Vec<[u64; 4]> = results
        .iter()
        .map(|r| std::array::from_fn(|k| median(r.iter().map(|s| s[k]).collect())))
        .collect();
    println!("{n} sets then {n} gets of 100-byte values, {rounds} rounds alternated; medians of per-round percentiles (µs)");
    println!(
        "{:<30} {:>9} {:>9} {:>9} {:>9}",
        "", "set p50", "set p99", "get p50", "get p99"
    );
    for (name, m) in names.iter().zip(&medians) {
        let us = |ns: u64| format!("{:.1}", ns as f64 / 1000.0);
        println!(
            "{name:<30} {:>9} {:>9} {:>9} {:>9}",
            us(m[0]),
            us(m[1]),
            us(m[2]),
            us(m[3])
        );
    }
    let ratio = |a: u64, b: u64| a as f64 / b.max(1) as f64;
    println!(
        "node: guest / native SQLite: set p50 {:.2}x, get p50 {:.2}x",
        ratio(medians[0][0], medians[2][0]),
        ratio(medians[0][2], medians[2][2])
    );
    println!(
        "cluster: guest / native ClusterKv: set p50 {:.2}x, get p50 {:.2}x",
        ratio(medians[3][0], medians[4][0]),
        ratio(medians[3][2], medians[4][2])
    );
}

/// A file name not used before in this process.
fn rand_name() -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!("kv-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}
