//! Instantiation from `InstancePre` with the pooling allocator, and a whole
//! run of `hello`, in-process. Reproduce: `cargo bench -p flotilla-benches`
//! (needs `scripts/build-sample-modules.sh` first).

use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion};
use flotilla_agent::runtime::{CaptureBuffer, Limits, RunSpec, Runtime, RuntimeConfig, Stdio};

fn sample(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/sample-modules")
        .join(name)
}

fn instantiate(c: &mut Criterion) {
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let runtime = Runtime::new(RuntimeConfig {
        max_instances: 16,
        ..RuntimeConfig::default()
    })
    .unwrap();
    let limits = Limits {
        memory_bytes: Some(64 << 20),
        cpu_millis: Some(1000),
        timeout: None,
    };
    for name in ["hello.wasm", "hello.component.wasm"] {
        let module = runtime.load_file(&sample(name)).unwrap();
        c.bench_function(&format!("instantiate {name} (InstancePre, pooling)"), |b| {
            b.to_async(&tokio)
                .iter(|| async { module.instantiate_and_drop(&limits).await.unwrap() })
        });
        c.bench_function(
            &format!("run {name} to completion (captured stdout)"),
            |b| {
                b.to_async(&tokio).iter(|| async {
                    let spec = RunSpec {
                        limits: limits.clone(),
                        stdout: Stdio::Capture(CaptureBuffer::new(4096)),
                        ..RunSpec::default()
                    };
                    module.run(spec).await.unwrap()
                })
            },
        );
    }
}

criterion_group!(benches, instantiate);
criterion_main!(benches);
