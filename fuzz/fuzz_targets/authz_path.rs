//! Authorization of any method on any path, for every kind of caller, on a
//! store holding nothing a node could claim. No panic, and the role rules
//! hold whatever the path's spelling (percent-encoding, extra slashes,
//! case): a view token writes nothing, a join token only asks for a node
//! certificate, and a node writes only a status or its first report.
#![no_main]

use std::sync::OnceLock;

use flotilla_control_plane::api::authz::{authorize, Caller, Decision, Target};
use flotilla_control_plane::store::{SqliteStore, Store};
use http::Method;
use libfuzzer_sys::fuzz_target;

fn store() -> &'static SqliteStore {
    static STORE: OnceLock<(tempfile::TempDir, SqliteStore)> = OnceLock::new();
    &STORE
        .get_or_init(|| {
            let dir = tempfile::tempdir().expect("a temporary folder");
            let store = SqliteStore::open(&dir.path().join("store.db")).expect("a store");
            (dir, store)
        })
        .1
}

const METHODS: [Method; 6] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
];

// The caller, the method, the path (a shape seeds can be written in).
fuzz_target!(|input: &[u8]| {
    let [who, how, path @ ..] = input else {
        return;
    };
    let Ok(path) = std::str::from_utf8(path) else {
        return;
    };
    let caller = match who % 5 {
        0 => Caller::Admin,
        1 => Caller::View,
        2 => Caller::Joiner,
        3 => Caller::Member(flotilla_control_plane::api::rbac::Member {
            token: "abc123".into(),
            own: Some((flotilla_spec::rbac::BuiltinRole::Edit, "team-a".into())),
        }),
        _ => Caller::Node("node-a".into()),
    };
    let method = &METHODS[usize::from(*how) % METHODS.len()];
    let store: &dyn Store = store();
    let Ok(decision) = authorize(&caller, method, path, false, store) else {
        return;
    };
    let target = Target::parse(path);
    let read = *method == Method::GET || *method == Method::HEAD;
    if target == Target::Public || read && !matches!(caller, Caller::Joiner) {
        return;
    }
    match caller {
        Caller::Admin => {}
        // An edit token of team-a writes in team-a only (and uploads modules).
        Caller::Member(_) => match &target {
            Target::Object {
                namespace,
                plural,
                subresource,
                ..
            } => {
                assert_eq!(
                    namespace.as_deref(),
                    Some("team-a"),
                    "a team-a token may {method} {path}"
                );
                // Instances, volumes and statuses are the controllers'.
                assert!(
                    *method == Method::DELETE
                        || subresource.is_none() && plural != "instances" && plural != "volumes",
                    "a team-a token may {method} {path}"
                );
            }
            Target::Bucket { namespace, .. } => {
                assert_eq!(namespace, "team-a", "a team-a token may {method} {path}")
            }
            Target::Blob(_) | Target::AccessReview => {}
            _ => panic!("a team-a token may {method} {path}"),
        },
        Caller::View => panic!("a view token may {method} {path}"),
        Caller::Joiner => assert!(
            target == Target::NodeCertificate && *method == Method::POST,
            "a join token may {method} {path}"
        ),
        Caller::Node(ref node) => match (&decision, &target) {
            (_, Target::NodeCertificate) if *method == Method::POST => {}
            (Decision::AllowIfBody(_), Target::Object { name: None, .. })
                if *method == Method::POST => {}
            (
                Decision::Allow(_),
                Target::Object {
                    plural,
                    name: Some(name),
                    subresource: Some(sub),
                    ..
                },
            ) if *method == Method::PUT && sub == "status" => {
                assert!(
                    plural == "nodes" && name == node,
                    "node {node} may write the status of {plural}/{name}, which the empty store does not bind to it"
                );
            }
            _ => panic!("node {node} may {method} {path}: {decision:?}"),
        },
    }
});
