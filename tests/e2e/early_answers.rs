//! Answers the API gives before it has read a request's body (401, 403,
//! 413, a blob it already has) reach the client whole over HTTP/2 — curl's
//! default with ALPN — as over HTTP/1.1: not a reset stream ("Stream error
//! in the HTTP/2 framing layer", no status), which is what a client got
//! about 4 times in 6 before the server drained such bodies.

use std::path::Path;
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::cluster::*;

/// `curl -X METHOD --data-binary @body`: (curl's exit code, status, HTTP
/// version, stderr).
fn curl(
    c: &Cluster,
    http: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &Path,
    ca: &Path,
) -> (i32, String, String, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", http, "--cacert"])
        .arg(ca)
        .args(["-o", "/dev/null", "-w", "%{http_code} %{http_version}"])
        .args(["-X", method, "-H", "Content-Type: application/json"])
        .arg("--data-binary")
        .arg(format!("@{}", body.display()));
    if let Some(token) = token {
        cmd.args(["-H", &format!("Authorization: Bearer {token}")]);
    }
    let out = cmd.arg(format!("{}{path}", c.base())).output().unwrap();
    let written = String::from_utf8_lossy(&out.stdout).into_owned();
    let (status, version) = written.split_once(' ').unwrap_or((&written, ""));
    (
        out.status.code().unwrap_or(-1),
        status.to_string(),
        version.to_string(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn early_answers_reach_http2_clients_whole() {
    let c = Cluster::start_server();
    let admin = c.token();
    let view = c.ok(&["token", "create", "--role", "view"]);
    let view = view.trim();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, c.ca_pem()).unwrap();
    // Under the 1 MiB object limit, but far more than fits in the
    // stream's first flow-control window: the client is still sending
    // when the answer comes.
    let object = dir.path().join("object.json");
    std::fs::write(&object, vec![b' '; 900 << 10]).unwrap();
    // Over the limit.
    let huge = dir.path().join("huge.json");
    std::fs::write(&huge, vec![b' '; 3 << 20]).unwrap();
    // A module, uploaded once; the second upload is answered at once.
    let module = dir.path().join("module.wasm");
    let bytes: Vec<u8> = (0..(8u32 << 20)).map(|i| (i % 251) as u8).collect();
    std::fs::write(&module, &bytes).unwrap();
    let blob = format!("/blobs/sha256/{}", hex::encode(Sha256::digest(&bytes)));
    let workload = "/apis/flotilla.dev/v1/namespaces/default/workloads/early";

    let cases: [(&str, &str, Option<&str>, &Path, &str); 4] = [
        ("PUT", workload, Some(view), &object, "403"),
        ("PUT", workload, None, &object, "401"),
        ("PUT", workload, Some(&admin), &huge, "413"),
        ("PUT", &blob, Some(&admin), &module, "201"),
    ];
    let first = curl(&c, "--http2", "PUT", &blob, Some(&admin), &module, &ca);
    assert_eq!((first.0, first.1.as_str()), (0, "201"), "{first:?}");
    for (method, path, token, body, want) in cases {
        for (http, version, tries) in [("--http2", "2", 8), ("--http1.1", "1.1", 2)] {
            for _ in 0..tries {
                let started = std::time::Instant::now();
                let (code, status, got, stderr) = curl(&c, http, method, path, token, body, &ca);
                assert_eq!(
                    (code, status.as_str(), got.as_str()),
                    (0, want, version),
                    "{method} {path} ({} bytes) over HTTP/{version}: {stderr}",
                    std::fs::metadata(body).unwrap().len()
                );
                // Answered as soon as the body is in, not after a stall (a
                // client that missed the end of its stream waited 30 s,
                // for the next keep-alive ping).
                assert!(
                    started.elapsed() < std::time::Duration::from_secs(10),
                    "{method} {path} over HTTP/{version} took {:?}",
                    started.elapsed()
                );
            }
        }
    }
    // A module declared larger than the 256 MiB limit (a sparse file: no
    // disk used), streamed (`-T`) at 8 MB/s: refused from its
    // Content-Length, so the answer comes once the 16 MiB drain is read (2 s
    // at that rate), not after the 256 MiB a streaming check would read
    // first (32 s); and it arrives whole though the client had far more to
    // send (the stream is reset with NO_ERROR after the answer).
    let oversized = dir.path().join("oversized.wasm");
    std::fs::File::create(&oversized)
        .unwrap()
        .set_len(300 << 20)
        .unwrap();
    let digest = format!("/blobs/sha256/{}", "ab".repeat(32));
    let started = std::time::Instant::now();
    let out = Command::new("curl")
        .args(["-sS", "--http2", "--limit-rate", "8M", "--cacert"])
        .arg(&ca)
        .args(["-o", "/dev/null", "-w", "%{http_code}", "-T"])
        .arg(&oversized)
        .args(["-H", &format!("Authorization: Bearer {admin}")])
        .arg(format!("{}{digest}", c.base()))
        .output()
        .unwrap();
    let took = started.elapsed();
    assert_eq!(
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).as_ref()
        ),
        (Some(0), "413"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        took < std::time::Duration::from_secs(20),
        "refused before the body was read, not after 256 MiB: took {took:?}"
    );
    // The server is still well, and the connections it drained are gone.
    assert_eq!(c.raw("GET", "/healthz", &Who::Nobody, "").0, 200);
}

/// `curl` of the ingress with a body: (exit code, status, stderr).
fn post(ingress: &str, host: &str, path: &str, body: &Path) -> (i32, String, String) {
    let out = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "-H"])
        .arg(format!("Host: {host}"))
        .arg("--data-binary")
        .arg(format!("@{}", body.display()))
        .arg(format!("http://{ingress}{path}"))
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_ingress_answers_whole_when_nothing_reads_the_body() {
    let c = Cluster::start();
    let ingress = crate::http::ingress_of(&c, "node-1");
    c.apply("wagi.yaml", crate::http::WAGI);
    crate::http::ready(&c, "wagi", 1);
    let dir = tempfile::tempdir().unwrap();
    let body = dir.path().join("body");
    std::fs::write(&body, vec![b'x'; 4 << 20]).unwrap();
    // wagi-hello's `/` never reads its stdin; no route for nowhere.local.
    for (host, want) in [("wagi.local", "200"), ("nowhere.local", "404")] {
        for _ in 0..6 {
            let (code, status, stderr) = post(&ingress, host, "/", &body);
            assert_eq!((code, status.as_str()), (0, want), "{host}: {stderr}");
        }
    }
}
