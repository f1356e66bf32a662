//! Bundles for air-gapped sites: `flotilla bundle export` from a real
//! registry (with basic auth), the registry then stopped, `flotilla bundle
//! import` into a control plane that never reaches it, and workloads by
//! tag and by digest run from what was imported — signatures checked
//! against a ModulePolicy from the bundle's payloads, a tampered bundle
//! refused whole, a bundle signed offline, importing kept to admins, and a
//! layout made without Flotilla.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::cluster::{Cluster, Who};
use crate::registry::{
    cli_with_stdin, key_pair, running, stored_module, workload, Registry, MANIFEST_TYPES,
};

const IMPORTED: &str = "/apis/flotilla.dev/v1/importedmodules";

/// `tar -xOf BUNDLE PATH`: one file of a bundle.
fn member(bundle: &Path, path: &str) -> Vec<u8> {
    let out = Command::new("tar")
        .arg("-xOf")
        .arg(bundle)
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    out.stdout
}

fn policy(name: &str, public: &str) -> String {
    format!(
        "apiVersion: flotilla.dev/v1\nkind: ModulePolicy\nmetadata: {{name: {name}}}\nspec:\n  require: signed\n  keys:\n  - |\n{}",
        public
            .lines()
            .map(|l| format!("    {l}\n"))
            .collect::<String>()
    )
}

/// Applies `body`, expecting a refusal; what was said.
fn refused(c: &Cluster, name: &str, body: &str) -> String {
    let file = c.manifest(&format!("{name}.yaml"), body);
    let out = c.cli(&["apply", "-f", file.to_str().unwrap()]);
    assert!(!out.status.success(), "{name} was admitted");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_bundle_carries_signed_modules_to_a_control_plane_without_a_registry() {
    let Some(mut registry) = Registry::start(Some(("ops", "s3cret"))) else {
        return;
    };
    let c = Cluster::start();
    let address = registry.address();
    let at = |repo: &str| format!("oci://{address}/{repo}");
    let login = ["--username", "ops", "--password-stdin"];
    let sleeper = crate::support::sample("sleeper.wasm");
    let hello = crate::support::sample("hello.wasm");
    for (file, repo) in [(&sleeper, "signed/app:v1"), (&hello, "plain/app:v1")] {
        let mut args = vec!["push", file.to_str().unwrap()];
        let target = at(repo);
        args.push(&target);
        args.extend(login);
        let out = cli_with_stdin(&c, &args, "s3cret\n");
        assert!(out.status.success(), "{out:?}");
    }
    let (private, public) = key_pair();
    let key = c.dir.path().join("key.pem");
    std::fs::write(&key, &private).unwrap();
    let signed_ref = at("signed/app:v1");
    let mut args = vec!["sign", signed_ref.as_str(), "--key", key.to_str().unwrap()];
    args.extend(login);
    assert!(cli_with_stdin(&c, &args, "s3cret\n").status.success());

    // Exported with the registry's credentials, which the bundle does not hold.
    let bundle = c.dir.path().join("site.tar");
    let plain_ref = at("plain/app:v1");
    let mut args = vec![
        "bundle",
        "export",
        signed_ref.as_str(),
        plain_ref.as_str(),
        "-o",
        bundle.to_str().unwrap(),
    ];
    args.extend(login);
    let out = cli_with_stdin(&c, &args, "s3cret\n");
    assert!(out.status.success(), "{out:?}");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("2 module(s), 1 signature(s)"), "{said}");
    let raw = std::fs::read(&bundle).unwrap();
    assert!(!raw.windows(6).any(|w| w == b"s3cret"));

    // An OCI image layout: its index names both modules and the signature.
    let layout: Value = serde_json::from_slice(&member(&bundle, "oci-layout")).unwrap();
    assert_eq!(layout["imageLayoutVersion"], "1.0.0");
    let index: Value = serde_json::from_slice(&member(&bundle, "index.json")).unwrap();
    let names: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            m["annotations"]["io.containerd.image.name"]
                .as_str()
                .unwrap()
        })
        .collect();
    let signed_manifest = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        names,
        [
            format!("{}/signed/app:v1", address),
            format!(
                "{}/signed/app:{}.sig",
                address,
                signed_manifest.replacen(':', "-", 1)
            ),
            format!("{}/plain/app:v1", address),
        ]
    );
    assert_eq!(
        index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
        "v1"
    );
    // Every blob is named by its digest, the registry's manifest kept byte for byte.
    let basic = {
        use base64::Engine;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("ops:s3cret")
        )
    };
    let (status, _, from_registry) = registry.call(
        "GET",
        "/v2/signed/app/manifests/v1",
        &[("Accept", MANIFEST_TYPES), ("Authorization", &basic)],
        b"",
    );
    assert_eq!(status, 200);
    let manifest = member(&bundle, &format!("blobs/sha256/{}", &signed_manifest[7..]));
    assert_eq!(manifest, from_registry);
    assert_eq!(
        format!("sha256:{}", hex::encode(Sha256::digest(&manifest))),
        signed_manifest
    );
    let manifest: Value = serde_json::from_slice(&manifest).unwrap();
    assert_eq!(manifest["layers"][0]["mediaType"], "application/wasm");

    // From here on there is no registry.
    registry.stop();

    // One changed byte in a module: nothing is imported.
    let module = std::fs::read(&sleeper).unwrap();
    let at_module = raw
        .windows(module.len())
        .position(|w| w == module.as_slice())
        .unwrap();
    let mut tampered = raw.clone();
    tampered[at_module + module.len() / 2] ^= 0x40;
    let tampered_file = c.dir.path().join("tampered.tar");
    std::fs::write(&tampered_file, &tampered).unwrap();
    let out = c.cli(&["bundle", "import", tampered_file.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && said.contains("tampered with"),
        "{said}"
    );
    assert!(c.items("importedmodules").is_empty());

    // Importing is for admins.
    let view = c
        .ok(&["token", "create", "--role", "view"])
        .trim()
        .to_string();
    let (status, body) = c.raw("POST", IMPORTED, &Who::Token(&view), "{}");
    assert_eq!(status, 403, "{body}");

    let imported = c.ok(&["bundle", "import", bundle.to_str().unwrap()]);
    assert!(
        imported.contains("importedmodule.flotilla.dev/"),
        "{imported}"
    );
    assert!(imported.contains(&signed_manifest), "{imported}");
    let table = c.ok(&["get", "importedmodules"]);
    assert!(
        table.contains("signed/app:v1") && table.contains("plain/app:v1"),
        "{table}"
    );
    let listed = c.items("importedmodules");
    let signed_object = listed
        .iter()
        .find(|m| m["spec"]["reference"] == signed_ref)
        .unwrap();
    assert_eq!(signed_object["status"]["manifestDigest"], signed_manifest);
    assert_eq!(
        signed_object["status"]["sha256"],
        hex::encode(Sha256::digest(&module))
    );
    // Importing again changes nothing.
    let again = c.ok(&["bundle", "import", bundle.to_str().unwrap()]);
    // (Each module is recorded by tag and by digest.)
    assert_eq!(again.matches(" unchanged").count(), 4, "{again}");

    c.apply("policy.yaml", &policy("signed-only", &public));
    // By tag: resolved from the import, pinned to its manifest, running.
    c.apply("signed.yaml", &workload("signed", &signed_ref, ""));
    let module_spec = stored_module(&c, "signed");
    assert_eq!(
        module_spec["resolved"],
        format!("{signed_ref}@{signed_manifest}")
    );
    c.wait_until("the imported module runs", Duration::from_secs(30), || {
        running(&c, "signed").len() == 1
    });
    // By digest.
    let by_digest = format!("{}@{signed_manifest}", at("signed/app"));
    c.apply("pinned.yaml", &workload("pinned", &by_digest, ""));
    c.wait_until(
        "the module named by digest runs",
        Duration::from_secs(30),
        || running(&c, "pinned").len() == 1,
    );
    // The unsigned one is refused under the policy, naming why.
    let said = refused(&c, "plain", &workload("plain", &plain_ref, ""));
    assert!(
        said.contains("ModulePolicy signed-only") && said.contains("not signed"),
        "{said}"
    );
    // A reference nothing was imported for needs the registry, which is gone.
    let said = refused(&c, "other", &workload("other", &at("other/app:v1"), ""));
    assert!(said.contains("registry"), "{said}");

    // Signed offline, in the bundle, and imported again: admitted.
    let out = c.ok(&[
        "sign",
        bundle.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ]);
    assert!(out.contains("signed 2 modules"), "{out}");
    let again = c.ok(&["bundle", "import", bundle.to_str().unwrap()]);
    assert!(again.contains(" configured"), "{again}");
    c.apply("plain.yaml", &workload("plain", &plain_ref, ""));
    assert_eq!(
        stored_module(&c, "plain")["sha256"],
        hex::encode(Sha256::digest(std::fs::read(&hello).unwrap()))
    );

    // A signature names the repository it was made for: the signed module
    // relabelled as another repository in its bundle is refused there.
    let unpacked = c.dir.path().join("unpacked");
    std::fs::create_dir_all(&unpacked).unwrap();
    let tar = |args: &[&str]| {
        let out = Command::new("tar").args(args).output().unwrap();
        assert!(out.status.success(), "{out:?}");
    };
    tar(&[
        "-xf",
        bundle.to_str().unwrap(),
        "-C",
        unpacked.to_str().unwrap(),
    ]);
    let index = std::fs::read_to_string(unpacked.join("index.json")).unwrap();
    std::fs::write(
        unpacked.join("index.json"),
        index.replace("/signed/app:", "/forged/app:"),
    )
    .unwrap();
    let relabelled = c.dir.path().join("relabelled.tar");
    tar(&[
        "-cf",
        relabelled.to_str().unwrap(),
        "-C",
        unpacked.to_str().unwrap(),
        ".",
    ]);
    c.ok(&["bundle", "import", relabelled.to_str().unwrap()]);
    let said = refused(&c, "forged", &workload("forged", &at("forged/app:v1"), ""));
    assert!(said.contains("names its repository"), "{said}");

    // A later bundle moves the tag: the running workload keeps its pinned
    // module, and its next write is still checked (signatures found by
    // digest) without any registry.
    registry.run();
    let mut args = vec!["push", hello.to_str().unwrap(), signed_ref.as_str()];
    args.extend(login);
    assert!(cli_with_stdin(&c, &args, "s3cret\n").status.success());
    let mut args = vec!["sign", signed_ref.as_str(), "--key", key.to_str().unwrap()];
    args.extend(login);
    assert!(cli_with_stdin(&c, &args, "s3cret\n").status.success());
    let later = c.dir.path().join("later.tar");
    let mut args = vec![
        "bundle",
        "export",
        signed_ref.as_str(),
        "-o",
        later.to_str().unwrap(),
    ];
    args.extend(login);
    assert!(cli_with_stdin(&c, &args, "s3cret\n").status.success());
    registry.stop();
    let moved = c.ok(&["bundle", "import", later.to_str().unwrap()]);
    assert!(
        moved.contains(" configured") && !moved.contains(&signed_manifest),
        "{moved}"
    );
    c.ok(&["scale", "workload", "signed", "--replicas", "2"]);
    assert_eq!(stored_module(&c, "signed"), module_spec);
    c.wait_until(
        "both replicas run the pinned module",
        Duration::from_secs(30),
        || running(&c, "signed").len() == 2,
    );
}

#[test]
fn imported_modules_are_checked_by_the_server_not_believed() {
    let c = Cluster::start_server();
    let module = std::fs::read(crate::support::sample("sleeper.wasm")).unwrap();
    let sha = hex::encode(Sha256::digest(&module));
    let config = br#"{"architecture":"wasm","os":"wasip1"}"#;
    let manifest = |layer: &str| {
        json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.wasm.config.v0+json",
                       "digest": format!("sha256:{}", hex::encode(Sha256::digest(config))),
                       "size": config.len()},
            "layers": [{"mediaType": "application/wasm", "digest": format!("sha256:{layer}"),
                        "size": module.len()}],
        })
        .to_string()
    };
    let b64 = |bytes: &[u8]| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(bytes)
    };
    let reference = "oci://registry.invalid/app:v1";
    let object = |name: &str, reference: &str, manifest: &str, signatures: Value| {
        json!({"apiVersion": "flotilla.dev/v1", "kind": "ImportedModule",
               "metadata": {"name": name},
               "spec": {"reference": reference, "manifest": b64(manifest.as_bytes()),
                        "signatures": signatures}})
        .to_string()
    };
    let name = flotilla_spec::imported::name_for(reference);
    let admin = c.token();
    let post = |body: String| c.raw("POST", IMPORTED, &Who::Token(&admin), &body);

    // The module was never uploaded.
    let (status, body) = post(object(&name, reference, &manifest(&sha), json!([])));
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("has not been uploaded"), "{body}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(c.client(&admin).put_blob(&sha, module.clone()))
        .unwrap();

    // A name other than the reference's.
    let (status, body) = post(object("mine", reference, &manifest(&sha), json!([])));
    assert_eq!(status, 422, "{body}");
    assert!(body.contains(&name), "{body}");
    // A pinned reference whose manifest is another.
    let pinned = format!("oci://registry.invalid/app@sha256:{}", "0".repeat(64));
    let (status, body) = post(object(
        &flotilla_spec::imported::name_for(&pinned),
        &pinned,
        &manifest(&sha),
        json!([]),
    ));
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("tampered with"), "{body}");
    // A container image, not a Wasm module.
    let image = manifest(&sha).replace(
        "application/vnd.wasm.config.v0+json",
        "application/vnd.oci.image.config.v1+json",
    );
    let (status, body) = post(object(&name, reference, &image, json!([])));
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("not a Wasm module"), "{body}");
    // A signature payload about another manifest.
    let other = json!({"critical": {"identity": {"docker-reference": "registry.invalid/app"},
        "image": {"docker-manifest-digest": format!("sha256:{}", "1".repeat(64))},
        "type": "cosign container image signature"}, "optional": null})
    .to_string();
    let (status, body) = post(object(
        &name,
        reference,
        &manifest(&sha),
        json!([{"payload": b64(other.as_bytes()), "signature": "MEUCIQ=="}]),
    ));
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("does not sign manifest"), "{body}");
    // Its status is the server's: what was given is replaced.
    let mut good: Value =
        serde_json::from_str(&object(&name, reference, &manifest(&sha), json!([]))).unwrap();
    good["status"] = json!({"manifestDigest": "sha256:forged", "sha256": "forged", "size": 1});
    let (status, body) = post(good.to_string());
    assert_eq!(status, 201, "{body}");
    let stored: Value = serde_json::from_str(&body).unwrap();
    let digest = format!(
        "sha256:{}",
        hex::encode(Sha256::digest(manifest(&sha).as_bytes()))
    );
    assert_eq!(stored["status"]["manifestDigest"], digest);
    assert_eq!(stored["status"]["sha256"], sha);
    let (status, body) = c.raw(
        "PUT",
        &format!("{IMPORTED}/{name}/status"),
        &Who::Token(&admin),
        &stored.to_string(),
    );
    assert_eq!(status, 405, "{body}");
}

#[test]
fn a_layout_made_without_flotilla_is_imported_and_run() {
    let c = Cluster::start();
    // An OCI image layout as `oras copy --to-oci-layout` leaves it: one
    // repository's tags, named by tag only, folders and all, tarred by tar.
    let layout = c.dir.path().join("layout");
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| {
        let hex = hex::encode(Sha256::digest(bytes));
        std::fs::write(blobs.join(&hex), bytes).unwrap();
        format!("sha256:{hex}")
    };
    let module = std::fs::read(crate::support::sample("sleeper.wasm")).unwrap();
    let config = br#"{"architecture":"wasm","os":"wasip1","layerDigests":[]}"#;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.wasm.config.v0+json",
                   "digest": put(config), "size": config.len()},
        "layers": [{"mediaType": "application/wasm", "digest": put(&module),
                    "size": module.len(),
                    "annotations": {"org.opencontainers.image.title": "sleeper.wasm"}}],
    })
    .to_string();
    let digest = put(manifest.as_bytes());
    let index = json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": digest, "size": manifest.len(),
        "annotations": {"org.opencontainers.image.ref.name": "v7"}}]});
    std::fs::write(layout.join("index.json"), index.to_string()).unwrap();
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion": "1.0.0"}"#,
    )
    .unwrap();
    let file = c.dir.path().join("layout.tar");
    let tar = Command::new("tar")
        .arg("-cf")
        .arg(&file)
        .arg("-C")
        .arg(&layout)
        .arg(".")
        .status()
        .unwrap();
    assert!(tar.success());

    let out = c.cli(&["bundle", "import", file.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && said.contains("--repository"),
        "{said}"
    );
    let repository = "oci://registry.invalid/hand/app";
    c.ok(&[
        "bundle",
        "import",
        file.to_str().unwrap(),
        "--repository",
        repository,
    ]);
    let source = format!("{repository}:v7");
    c.apply("hand.yaml", &workload("hand", &source, ""));
    assert_eq!(
        stored_module(&c, "hand")["resolved"],
        format!("{source}@{digest}")
    );
    c.wait_until(
        "the hand-made artifact runs",
        Duration::from_secs(30),
        || running(&c, "hand").len() == 1,
    );
}
