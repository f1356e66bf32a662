//! What every [`Store`] must do, checked the same way against each
//! backend: SQLite here, etcd with a real member where `etcd` is installed
//! (CI installs it; there its absence fails).

use std::time::Duration;

use serde_json::{json, Value};

use super::{revision_of, ChangeType, EtcdStore, EtcdTarget, SqliteStore, Store, StoreError};

fn object(namespace: &str, name: &str, v: u32) -> Value {
    json!({"apiVersion": "flotilla.dev/v1", "kind": "Config",
        "metadata": {"name": name, "namespace": namespace}, "data": {"v": v.to_string()}})
}

/// The contract, on an empty store.
fn check(store: &dyn Store) {
    let start = store.revision().unwrap();
    let mut woken = store.subscribe();
    let a = store
        .create("Config", "ns", "a", object("ns", "a", 1))
        .unwrap();
    let r1 = revision_of(&a).unwrap();
    assert!(r1 > start);
    assert!(matches!(
        store.create("Config", "ns", "a", object("ns", "a", 9)),
        Err(StoreError::AlreadyExists { .. })
    ));
    let got = store.get("Config", "ns", "a").unwrap().unwrap();
    assert_eq!(revision_of(&got), Some(r1));
    assert_eq!(got["data"]["v"], "1");
    assert_eq!(store.get("Config", "ns", "nope").unwrap(), None);

    let a2 = store
        .update("Config", "ns", "a", object("ns", "a", 2), Some(r1))
        .unwrap();
    let r2 = revision_of(&a2).unwrap();
    assert!(r2 > r1);
    match store.update("Config", "ns", "a", object("ns", "a", 3), Some(r1)) {
        Err(StoreError::Conflict { current, given, .. }) => {
            assert_eq!((current, given), (r2, r1));
        }
        other => panic!("a stale update must conflict: {other:?}"),
    }
    assert!(matches!(
        store.update("Config", "ns", "nope", object("ns", "nope", 1), None),
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.delete("Config", "ns", "nope"),
        Err(StoreError::NotFound { .. })
    ));

    store
        .create("Config", "ns", "b", object("ns", "b", 1))
        .unwrap();
    store
        .create("Config", "other", "c", object("other", "c", 1))
        .unwrap();
    store
        .create("Node", "", "n", json!({"metadata": {"name": "n"}}))
        .unwrap();
    let all = store.list("Config", None).unwrap();
    let names: Vec<_> = all
        .items
        .iter()
        .map(|o| o["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["a", "b", "c"], "by namespace, then name");
    assert!(all.revision >= r2);
    assert_eq!(store.list("Config", Some("other")).unwrap().items.len(), 1);
    assert_eq!(store.list("Node", None).unwrap().items.len(), 1);

    let gone = store.delete("Config", "ns", "a").unwrap();
    let r3 = revision_of(&gone).unwrap();
    assert!(r3 > r2, "a deleted object carries the deletion's revision");
    assert_eq!(gone["data"]["v"], "2", "as it was");
    assert_eq!(store.get("Config", "ns", "a").unwrap(), None);

    let changes = store.changes_since(start, 100).unwrap();
    let of_a: Vec<(ChangeType, u64)> = changes
        .iter()
        .filter(|c| c.object["metadata"]["name"] == "a")
        .map(|c| (c.change, c.revision))
        .collect();
    assert_eq!(
        of_a,
        [
            (ChangeType::Added, r1),
            (ChangeType::Modified, r2),
            (ChangeType::Deleted, r3)
        ]
    );
    assert!(changes.windows(2).all(|w| w[0].revision < w[1].revision));
    assert_eq!(changes[0].kind, "Config");
    assert_eq!(changes[0].namespace, "ns");
    let two = store.changes_since(start, 2).unwrap();
    assert_eq!(two.len(), 2);
    let after = store.changes_since(r2, 100).unwrap();
    assert!(after.iter().all(|c| c.revision > r2));
    assert!(store.changes_since(r3, 100).unwrap().is_empty());
    assert!(
        *woken.borrow_and_update() >= r3,
        "subscribers see the writes"
    );
}

/// The contract of `cluster` buckets, on an empty one.
fn check_kv(kv: &dyn flotilla_kv::Backend) {
    use flotilla_kv::digest;
    let b = "ns/b";
    kv.set_many(
        b,
        &[
            ("a".into(), b"12345".to_vec()),
            ("b/c".into(), b"x".to_vec()),
        ],
        20,
    )
    .unwrap();
    assert_eq!(kv.get(b, "a").unwrap(), Some(b"12345".to_vec()));
    assert_eq!(kv.get("ns/other", "a").unwrap(), None);
    // a(1)+12345(5) + b/c(3)+x(1) = 10 of 20: 11 more do not fit.
    let refused = kv
        .set_many(b, &[("big".into(), vec![0; 8])], 20)
        .unwrap_err();
    assert!(refused.is_quota_exceeded(), "{refused}");
    assert_eq!(kv.get(b, "big").unwrap(), None, "all or nothing");
    // Replacing a value counts its difference only.
    kv.set_many(b, &[("a".into(), b"1234567890".to_vec())], 20)
        .unwrap();
    assert_eq!(kv.increment(b, "n", 5, 20).unwrap(), 5);
    assert_eq!(kv.increment(b, "n", 2, 20).unwrap(), 7);
    assert!(matches!(kv.increment(b, "a", 1, 20), Ok(1234567891)));
    assert!(matches!(
        kv.increment(b, "b/c", 1, 20),
        Err(flotilla_kv::KvError::Invalid(_))
    ));
    assert!(!kv.compare_and_swap(b, "n", None, b"9", 20).unwrap());
    assert!(kv
        .compare_and_swap(b, "n", Some(digest(b"7")), b"9", 20)
        .unwrap());
    assert!(kv.compare_and_swap(b, "new", None, b"1", 30).unwrap());
    assert_eq!(kv.list_keys(b, None, 10).unwrap(), ["a", "b/c", "n", "new"]);
    assert_eq!(kv.list_keys(b, Some("b/c"), 1).unwrap(), ["n"]);
    kv.delete_many(b, &["a".into(), "n".into(), "missing".into()])
        .unwrap();
    assert_eq!(kv.list_keys(b, None, 10).unwrap(), ["b/c", "new"]);
    // Deleting gave the bytes back: 4 + 4 used, 12 more fit in 20.
    kv.set_many(b, &[("c".into(), vec![1; 11])], 20).unwrap();
}

#[test]
fn the_sqlite_store_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    check(&SqliteStore::open(&dir.path().join("store.db")).unwrap());
    check_kv(&flotilla_kv::SqliteKv::open(&dir.path().join("kv.db"), "test").unwrap());
}

#[test]
fn the_etcd_store_keeps_the_contract() {
    const ETCD: &str = "/usr/bin/etcd";
    if !std::path::Path::new(ETCD).exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "no {ETCD}: scripts/setup.sh installs Debian's etcd-server"
        );
        eprintln!("skipped: no {ETCD}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = |_| {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let (client, peer) = (port(0), port(1));
    let mut member = std::process::Command::new(ETCD)
        .args(["--name", "m", "--data-dir"])
        .arg(dir.path().join("m"))
        .args([
            "--listen-client-urls",
            &format!("http://127.0.0.1:{client}"),
        ])
        .args([
            "--advertise-client-urls",
            &format!("http://127.0.0.1:{client}"),
        ])
        .args(["--listen-peer-urls", &format!("http://127.0.0.1:{peer}")])
        .args([
            "--initial-advertise-peer-urls",
            &format!("http://127.0.0.1:{peer}"),
        ])
        .args(["--initial-cluster", &format!("m=http://127.0.0.1:{peer}")])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let target = EtcdTarget::parse(&format!("etcd://127.0.0.1:{client}/contract")).unwrap();
    let store = EtcdStore::connect(&target).unwrap();
    let started = std::time::Instant::now();
    while store.revision().is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "etcd did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The watch cache is running once it answers.
    while store.changes_since(store.revision().unwrap(), 1).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no watch cache"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    check(&store);
    check_kv(&super::etcd::EtcdKv::new(&store));
    // Fenced by a lease that does not hold the leader key: refused.
    let fenced = store.fenced(12345);
    assert!(matches!(
        fenced.create("Config", "ns", "f", object("ns", "f", 1)),
        Err(StoreError::Fenced(_))
    ));
    assert_eq!(store.get("Config", "ns", "f").unwrap(), None);
    let _ = member.kill();
    let _ = member.wait();
    // etcd gone: a clear error naming it, in bounded time.
    let started = std::time::Instant::now();
    match store.get("Config", "ns", "b") {
        Err(StoreError::Unavailable(message)) => {
            assert!(message.contains("etcd at http://127.0.0.1"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(10));
}
