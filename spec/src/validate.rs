//! Semantic validation with field paths: every problem names where it is and
//! what would be accepted, e.g.
//! `spec.resources.limits.memory: "64Mb" is not a memory quantity (use … 64Mi …)`.

use crate::meta::ObjectMeta;
use crate::quantity::{parse_cpu_millis, parse_duration, parse_memory_bytes};
use crate::workload::{ResourceList, Workload};

/// Most replicas one workload may ask for.
pub const MAX_REPLICAS: u32 = 10_000;

/// One problem at one field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct FieldError {
    /// Dotted path, e.g. `spec.resources.limits.memory`.
    pub path: String,
    /// What is wrong and what is accepted.
    pub message: String,
}

/// All the problems found in one object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
pub struct ValidationErrors(pub Vec<FieldError>);

#[derive(Default)]
struct Collector(Vec<FieldError>);

impl Collector {
    fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            path: path.into(),
            message: message.into(),
        });
    }

    fn check<T, E: std::fmt::Display>(&mut self, path: &str, result: Result<T, E>) -> Option<T> {
        result.map_err(|e| self.add(path, e.to_string())).ok()
    }
}

/// A network address as `host:port`: an IP address (IPv6 in brackets) or
/// a DNS name, and a port 1-65535 — nothing else (no path, no scheme, no
/// user info), so that it can only ever name a socket.
pub fn check_host_port(address: &str) -> Result<(), String> {
    let bad = || {
        format!("{address:?} is not host:port (e.g. 10.0.0.5:8080, [fd00::5]:8080 or node-a.example:8080)")
    };
    if let Ok(socket) = address.parse::<std::net::SocketAddr>() {
        return if socket.port() > 0 {
            Ok(())
        } else {
            Err(bad())
        };
    }
    let (host, port) = address.rsplit_once(':').ok_or_else(bad)?;
    let port_ok = port.parse::<u16>().is_ok_and(|p| p > 0) && !port.starts_with('+');
    let host_ok = host.len() <= 253
        && !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    if port_ok && host_ok {
        Ok(())
    } else {
        Err(bad())
    }
}

/// A DNS-1123 label: what Kubernetes accepts as a name.
pub fn check_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a valid name (use 1-63 lowercase letters, digits and '-', starting and ending with a letter or digit)"
        ))
    }
}

/// A DNS-1123 subdomain: dot-separated labels, at most 253 characters — the
/// names of objects Flotilla makes itself (events are `<object>.<hex>`).
pub fn check_object_name(name: &str) -> Result<(), String> {
    if name.len() <= 253 && name.split('.').all(|label| check_name(label).is_ok()) {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a valid object name (use dot-separated parts of lowercase letters, digits and '-', at most 253 characters)"
        ))
    }
}

/// Most bytes of an object's annotations, keys and values (Kubernetes'
/// limit).
pub const MAX_ANNOTATION_BYTES: usize = 256 * 1024;

fn check_meta(meta: &ObjectMeta, errors: &mut Collector) {
    let annotation_bytes: usize = meta
        .annotations
        .iter()
        .map(|(k, v)| k.len() + v.len())
        .sum();
    if annotation_bytes > MAX_ANNOTATION_BYTES {
        errors.add(
            "metadata.annotations",
            format!("{annotation_bytes} bytes is more than the {MAX_ANNOTATION_BYTES} allowed"),
        );
    }
    for key in meta.annotations.keys() {
        if key.is_empty() || key.len() > 253 || key.contains(char::is_whitespace) {
            errors.add(
                format!("metadata.annotations.{key}"),
                "an annotation key is 1-253 characters without spaces",
            );
        }
    }
    errors.check("metadata.name", check_name(&meta.name));
    if !meta.namespace.is_empty() {
        errors.check("metadata.namespace", check_name(&meta.namespace));
    }
    for key in meta.labels.keys() {
        if key.is_empty() || key.len() > 63 || key.contains(char::is_whitespace) {
            errors.add(
                format!("metadata.labels.{key}"),
                "a label key is 1-63 characters without spaces",
            );
        }
    }
}

/// `env`: names, and each `valueFrom` one reference to a valid key.
fn check_env(env: &[crate::workload::EnvVar], errors: &mut Collector) {
    for (n, var) in env.iter().enumerate() {
        if var.name.is_empty() || var.name.contains('=') || var.name.contains('\0') {
            errors.add(
                format!("spec.env[{n}].name"),
                "a variable name is not empty and has no '=' or NUL",
            );
        }
        let Some(source) = &var.value_from else {
            continue;
        };
        let path = format!("spec.env[{n}].valueFrom");
        if !var.value.is_empty() {
            errors.add(&path, "give value or valueFrom, not both");
        }
        match source.reference() {
            None => errors.add(
                &path,
                "give exactly one of configKeyRef: {name, key} and secretKeyRef: {name, key}",
            ),
            Some((_, reference)) => {
                if let Err(e) = check_object_name(&reference.name) {
                    errors.add(format!("{path}.name"), e);
                }
                if let Err(e) = crate::config::check_key(&reference.key) {
                    errors.add(format!("{path}.key"), e);
                }
            }
        }
    }
}

/// Most `envFrom` sources, and most `config.from` sources, a workload may have.
pub const MAX_WHOLE_OBJECT_SOURCES: usize = 32;

/// Sources of whole objects (`envFrom`, `config.from`): at most
/// [`MAX_WHOLE_OBJECT_SOURCES`], each naming exactly one valid object.
fn check_whole_sources<'a>(
    list: &str,
    sources: impl ExactSizeIterator<Item = Option<(&'static str, &'a str)>>,
    how: &str,
    errors: &mut Collector,
) {
    if sources.len() > MAX_WHOLE_OBJECT_SOURCES {
        errors.add(list, format!("at most {MAX_WHOLE_OBJECT_SOURCES} sources"));
    }
    for (n, source) in sources.enumerate() {
        let path = format!("{list}[{n}]");
        match source {
            None => errors.add(&path, format!("give exactly one of {how}")),
            Some((_, name)) => {
                if let Err(e) = check_object_name(name) {
                    errors.add(&path, e);
                }
            }
        }
    }
}

/// `envFrom`: one source each, a prefix that keeps names valid.
fn check_env_from(sources: &[crate::workload::EnvFromSource], errors: &mut Collector) {
    check_whole_sources(
        "spec.envFrom",
        sources.iter().map(|s| s.source()),
        "configRef: {name} and secretRef: {name}",
        errors,
    );
    for (n, source) in sources.iter().enumerate() {
        if source.prefix.contains('=') || source.prefix.contains('\0') || source.prefix.len() > 253
        {
            errors.add(
                format!("spec.envFrom[{n}].prefix"),
                "a prefix is at most 253 bytes, with no '=' or NUL",
            );
        }
    }
}

/// `config.from`: one source each.
fn check_config_store(config: &Option<crate::workload::ConfigStore>, errors: &mut Collector) {
    if let Some(config) = config {
        check_whole_sources(
            "spec.config.from",
            config.from.iter().map(|s| s.source()),
            "configRef: NAME and secretRef: NAME",
            errors,
        );
    }
}

/// Most `files` mounts a workload may have.
pub const MAX_FILE_MOUNTS: usize = 64;
/// Most items one mount may list.
pub const MAX_FILE_ITEMS: usize = 256;

/// Whether `path` is relative and goes only down (no `..`, `.`, `//`).
fn is_plain_relative(path: &str) -> bool {
    !path.is_empty()
        && !path.starts_with('/')
        && path
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != ".." && !part.contains('\0'))
}

/// `files`: absolute guest paths, one source each, item paths that stay
/// inside the mount.
/// Most `imagePullSecrets` a workload may name.
const MAX_PULL_SECRETS: usize = 8;

fn check_files(files: &[crate::workload::FileMount], errors: &mut Collector) {
    if files.len() > MAX_FILE_MOUNTS {
        errors.add("spec.files", format!("at most {MAX_FILE_MOUNTS} mounts"));
    }
    let mut guest_paths = std::collections::BTreeSet::new();
    for (n, mount) in files.iter().enumerate() {
        let path = format!("spec.files[{n}]");
        if !guest_paths.insert(mount.guest_path.trim_end_matches('/')) {
            errors.add(
                format!("{path}.guestPath"),
                "another mount has this guestPath",
            );
        }
        if mount.items.len() > MAX_FILE_ITEMS {
            errors.add(
                format!("{path}.items"),
                format!("at most {MAX_FILE_ITEMS} items"),
            );
        }
        let mut item_paths = std::collections::BTreeSet::new();
        for (i, item) in mount.items.iter().enumerate() {
            if !item_paths.insert(item.path.as_str()) {
                errors.add(
                    format!("{path}.items[{i}].path"),
                    "another item has this path",
                );
            }
        }
        let guest = mount.guest_path.strip_prefix('/');
        if !guest.is_some_and(is_plain_relative) {
            errors.add(
                format!("{path}.guestPath"),
                format!(
                    "{:?} is not an absolute path below / without '..' (e.g. /etc/app)",
                    mount.guest_path
                ),
            );
        }
        match mount.source() {
            None => errors.add(&path, "give exactly one of config: NAME and secret: NAME"),
            Some((_, name)) => {
                if let Err(e) = check_object_name(name) {
                    errors.add(
                        format!(
                            "{path}.{}",
                            if mount.config.is_some() {
                                "config"
                            } else {
                                "secret"
                            }
                        ),
                        e,
                    );
                }
            }
        }
        for (i, item) in mount.items.iter().enumerate() {
            if let Err(e) = crate::config::check_key(&item.key) {
                errors.add(format!("{path}.items[{i}].key"), e);
            }
            if !is_plain_relative(&item.path) {
                errors.add(
                    format!("{path}.items[{i}].path"),
                    format!(
                        "{:?} is not a relative path inside the mount (no leading '/', no '..')",
                        item.path
                    ),
                );
            }
        }
    }
}

/// Most steps a canary may have.
pub const MAX_CANARY_STEPS: usize = 32;

/// `spec.strategy.canary`: given exactly for `type: Canary`, each step one
/// thing.
fn check_canary(strategy: &crate::strategy::Strategy, errors: &mut Collector) {
    use crate::strategy::StrategyKind;
    let Some(canary) = &strategy.canary else {
        if strategy.kind == StrategyKind::Canary {
            errors.add(
                "spec.strategy.canary",
                "type: Canary needs its steps: canary: {steps: [{setWeight: 10}, {pause: {}}]}",
            );
        }
        return;
    };
    if strategy.kind != StrategyKind::Canary {
        errors.add(
            "spec.strategy.canary",
            "only type: Canary takes canary steps: set type: Canary, or remove them",
        );
    }
    if canary.steps.is_empty() || canary.steps.len() > MAX_CANARY_STEPS {
        errors.add(
            "spec.strategy.canary.steps",
            format!("give 1 to {MAX_CANARY_STEPS} steps"),
        );
    }
    for (n, step) in canary.steps.iter().enumerate() {
        if let Err(e) = step.parse() {
            errors.add(format!("spec.strategy.canary.steps[{n}]"), e);
        }
    }
    if let Some(analysis) = &canary.analysis {
        errors.check(
            "spec.strategy.canary.analysis.maxErrorRate",
            analysis.max_error_fraction(),
        );
    }
}

/// The fields of `execution: http` workloads.
/// `spec.placement.everyNode`: one instance per matching node, so no
/// replica count, no canary (it trades replicas), and no per-replica
/// persistent volumes (they are named by ordinal, not by node).
fn check_every_node(spec: &crate::workload::WorkloadSpec, errors: &mut Collector) {
    if !spec.placement.every_node {
        return;
    }
    if spec.replicas != 1 {
        errors.add(
            "spec.replicas",
            "an every-node workload runs one instance on each node its nodeSelector matches: leave replicas out (and scale it by labelling nodes)",
        );
    }
    if spec.strategy.kind == crate::strategy::StrategyKind::Canary {
        errors.add(
            "spec.strategy.type",
            "an every-node workload rolls node by node: use RollingUpdate (maxUnavailable, default 1) or Recreate",
        );
    }
    if let Some(rolling) = &spec.strategy.rolling_update {
        if rolling.max_surge.of(100, true) != Ok(0) {
            errors.add(
                "spec.strategy.rollingUpdate.maxSurge",
                "an every-node workload replaces in place, the old instance first: set maxSurge: 0 with the maxUnavailable you want",
            );
        }
    }
    if spec.is_stateful() {
        errors.add(
            "spec.volumes",
            "an every-node workload cannot have persistent volumes yet (they follow replica ordinals): use a hostPath volume granted on the node",
        );
    }
}

fn check_http(spec: &crate::workload::WorkloadSpec, errors: &mut Collector) {
    use crate::workload::Execution;
    if spec.execution != Execution::Http {
        if !spec.routes.is_empty() {
            errors.add(
                "spec.routes",
                "only http workloads have routes: add execution: http",
            );
        }
        if !spec.tls.is_empty() {
            errors.add(
                "spec.tls",
                "only http workloads have routes to serve over HTTPS: add execution: http",
            );
        }
        if spec.grants.outgoing() {
            errors.add(
                "spec.grants",
                "only http workloads make outgoing requests (workloads, hosts): add execution: http",
            );
        }
        if spec.max_concurrency.is_some() {
            errors.add(
                "spec.maxConcurrency",
                "only http workloads serve requests: add execution: http",
            );
        }
        return;
    }
    if spec.max_concurrency == Some(0) {
        errors.add("spec.maxConcurrency", "must be at least 1");
    }
    for (i, host) in spec.grants.hosts.iter().enumerate() {
        let port = host
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse::<u16>().ok());
        if port.is_none() {
            errors.add(
                format!("spec.grants.hosts[{i}]"),
                format!("{host:?} is not host:port (e.g. 127.0.0.1:9000)"),
            );
        }
    }
    for (i, route) in spec.routes.iter().enumerate() {
        let host = route.host.to_ascii_lowercase();
        if host.is_empty() || !host.split('.').all(|label| check_name(label).is_ok()) {
            errors.add(
                format!("spec.routes[{i}].host"),
                format!("{:?} is not a host name (e.g. hello.local)", route.host),
            );
        }
        if !route.path_prefix.starts_with('/') {
            errors.add(
                format!("spec.routes[{i}].pathPrefix"),
                format!("{:?} must start with / (e.g. /api)", route.path_prefix),
            );
        }
    }
    check_tls(spec, errors);
}

/// Most `tls` entries a workload may have.
pub const MAX_TLS_ENTRIES: usize = 16;

/// `tls`: each names a Secret and only hosts the routes have.
fn check_tls(spec: &crate::workload::WorkloadSpec, errors: &mut Collector) {
    if spec.tls.len() > MAX_TLS_ENTRIES {
        errors.add("spec.tls", format!("at most {MAX_TLS_ENTRIES} entries"));
    }
    for (i, tls) in spec.tls.iter().enumerate() {
        if let Err(e) = check_object_name(&tls.secret_name) {
            errors.add(format!("spec.tls[{i}].secretName"), e);
        }
        if tls.hosts.is_empty() {
            errors.add(
                format!("spec.tls[{i}].hosts"),
                "name the hosts (of routes) it serves",
            );
        }
        for (h, host) in tls.hosts.iter().enumerate() {
            if !spec
                .routes
                .iter()
                .any(|r| r.host.eq_ignore_ascii_case(host))
            {
                errors.add(
                    format!("spec.tls[{i}].hosts[{h}]"),
                    format!("{host:?} is not the host of one of spec.routes"),
                );
            }
        }
    }
}

/// Most volumes (and most volume mounts) a workload may have.
pub const MAX_VOLUMES: usize = 32;

/// `volumes` and `volumeMounts`: names, one kind each, limits that parse,
/// mounts of known volumes at plain absolute paths no other mount uses.
fn check_volumes(spec: &crate::workload::WorkloadSpec, errors: &mut Collector) {
    if spec.volumes.len() > MAX_VOLUMES || spec.volume_mounts.len() > MAX_VOLUMES {
        errors.add(
            "spec.volumes",
            format!("at most {MAX_VOLUMES} volumes and mounts"),
        );
    }
    let mut names = std::collections::BTreeSet::new();
    for (i, volume) in spec.volumes.iter().enumerate() {
        let path = format!("spec.volumes[{i}]");
        if let Err(e) = check_name(&volume.name) {
            errors.add(format!("{path}.name"), e);
        }
        if !names.insert(volume.name.as_str()) {
            errors.add(format!("{path}.name"), "another volume has this name");
        }
        let kinds = [
            volume.empty_dir.is_some(),
            volume.host_path.is_some(),
            volume.persistent.is_some(),
        ];
        if kinds.iter().filter(|k| **k).count() != 1 {
            errors.add(
                &path,
                "give exactly one of emptyDir: {}, hostPath: {path: /srv/data} and persistent: {size: 1Gi}",
            );
        }
        if let Some(empty) = &volume.empty_dir {
            if let Some(limit) = &empty.size_limit {
                if !matches!(crate::parse_memory_bytes(limit), Ok(n) if n > 0) {
                    errors.add(
                        format!("{path}.emptyDir.sizeLimit"),
                        format!("{limit:?} is not a size above zero (e.g. 100Mi)"),
                    );
                }
            }
            if empty.medium == "Memory" && empty.size_limit.is_none() {
                errors.add(
                    format!("{path}.emptyDir.sizeLimit"),
                    "a Memory volume takes the node's memory: give it a sizeLimit (e.g. 64Mi)",
                );
            }
            if !matches!(empty.medium.as_str(), "" | "Memory") {
                errors.add(
                    format!("{path}.emptyDir.medium"),
                    "give Memory (tmpfs) or leave it out (the node's disk)",
                );
            }
        }
        if let Some(host) = &volume.host_path {
            if !host.path.starts_with('/') {
                errors.add(format!("{path}.hostPath.path"), "give an absolute path");
            }
        }
        if let Some(persistent) = &volume.persistent {
            if !matches!(crate::parse_memory_bytes(&persistent.size), Ok(n) if n > 0) {
                errors.add(
                    format!("{path}.persistent.size"),
                    format!("{:?} is not a size above zero (e.g. 1Gi)", persistent.size),
                );
            }
            if spec.strategy.kind == crate::strategy::StrategyKind::Canary {
                errors.add(
                    format!("{path}.persistent"),
                    "a canary runs a second copy of replicas, but a persistent volume belongs to one replica: use strategy RollingUpdate (replicas are replaced one at a time) or Recreate",
                );
            }
        }
    }
    if let Some(after) = &spec.persistent_volume_reclaim_after {
        if crate::parse_duration(after).is_err() {
            errors.add(
                "spec.persistentVolumeReclaimAfter",
                format!("{after:?} is not a duration (e.g. 10m)"),
            );
        }
    }
    let mut paths: std::collections::BTreeSet<&str> = spec
        .files
        .iter()
        .map(|f| f.guest_path.trim_end_matches('/'))
        .collect();
    for (i, mount) in spec.volume_mounts.iter().enumerate() {
        let path = format!("spec.volumeMounts[{i}]");
        if !names.contains(mount.name.as_str()) {
            errors.add(
                format!("{path}.name"),
                format!("{:?} is not one of spec.volumes", mount.name),
            );
        }
        if !mount
            .mount_path
            .strip_prefix('/')
            .is_some_and(is_plain_relative)
        {
            errors.add(
                format!("{path}.mountPath"),
                format!(
                    "{:?} is not an absolute path below / without '..' (e.g. /data)",
                    mount.mount_path
                ),
            );
        }
        if !paths.insert(mount.mount_path.trim_end_matches('/')) {
            errors.add(
                format!("{path}.mountPath"),
                "another mount (or files entry) uses this path",
            );
        }
    }
}

/// Largest quota of one bucket.
pub const MAX_BUCKET_QUOTA: u64 = 1 << 30;

/// Most buckets one workload may be granted.
pub const MAX_BUCKETS: usize = 32;

/// `grants.keyValue`: bucket names and quotas.
fn check_key_value(grants: &[crate::workload::KeyValueGrant], errors: &mut Collector) {
    if grants.len() > MAX_BUCKETS {
        errors.add(
            "spec.grants.keyValue",
            format!("at most {MAX_BUCKETS} buckets"),
        );
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, grant) in grants.iter().enumerate() {
        let path = format!("spec.grants.keyValue[{i}]");
        if let Err(e) = check_object_name(&grant.bucket) {
            errors.add(format!("{path}.bucket"), e);
        }
        if !seen.insert(grant.bucket.as_str()) {
            errors.add(format!("{path}.bucket"), "another grant names this bucket");
        }
        if let Some(quota) = &grant.quota {
            match crate::parse_memory_bytes(quota) {
                Ok(n) if n > 0 && n <= MAX_BUCKET_QUOTA => {}
                _ => errors.add(
                    format!("{path}.quota"),
                    format!("{quota:?} is not a size from 1 byte to 1Gi (e.g. 64Mi)"),
                ),
            }
        }
    }
}

/// Validates a Workload as submitted by a user.
pub fn validate_workload(w: &Workload) -> Result<(), ValidationErrors> {
    let mut errors = Collector::default();
    check_meta(&w.metadata, &mut errors);
    let spec = &w.spec;
    match (&spec.module.source, &spec.module.sha256) {
        (None, None) => errors.add(
            "spec.module",
            "give a source (file:PATH or oci://REGISTRY/REPOSITORY:TAG) or a sha256",
        ),
        (Some(source), _)
            if !(source.starts_with("file:") || source.starts_with("oci://"))
                || source.len() > 1024
                || source.chars().any(char::is_whitespace) =>
        {
            errors.add(
                "spec.module.source",
                format!(
                    "{source:?} is not a supported source (use file:PATH, relative to the manifest, or oci://REGISTRY/REPOSITORY:TAG)"
                ),
            )
        }
        _ => {}
    }
    if let Some(resolved) = &spec.module.resolved {
        let oci = spec
            .module
            .source
            .as_deref()
            .is_some_and(|s| s.starts_with("oci://"));
        if !oci || !resolved.starts_with("oci://") || !resolved.contains("@sha256:") {
            errors.add(
                "spec.module.resolved",
                "is set by the server for oci:// sources only; leave it out",
            );
        }
    }
    if spec.image_pull_secrets.len() > MAX_PULL_SECRETS {
        errors.add(
            "spec.imagePullSecrets",
            format!("at most {MAX_PULL_SECRETS}"),
        );
    }
    for (n, secret) in spec.image_pull_secrets.iter().enumerate() {
        if secret.name.is_empty() || secret.name.len() > 253 {
            errors.add(
                format!("spec.imagePullSecrets[{n}].name"),
                "give the name of a Secret in the workload's namespace",
            );
        }
    }
    if let Some(digest) = &spec.module.sha256 {
        if digest.len() != 64
            || !digest
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        {
            errors.add(
                "spec.module.sha256",
                format!("{digest:?} is not a sha256 (64 lowercase hex digits)"),
            );
        }
    }
    if spec.replicas > MAX_REPLICAS {
        errors.add(
            "spec.replicas",
            format!("{} is more than the {MAX_REPLICAS} allowed", spec.replicas),
        );
    }
    if let Some(rolling) = &spec.strategy.rolling_update {
        if spec.strategy.kind == crate::strategy::StrategyKind::Recreate {
            errors.add(
                "spec.strategy.rollingUpdate",
                "only type: RollingUpdate takes rollingUpdate bounds: remove them, or the type",
            );
        }
        let surge = errors.check(
            "spec.strategy.rollingUpdate.maxSurge",
            rolling.max_surge.of(100, true),
        );
        let unavailable = errors.check(
            "spec.strategy.rollingUpdate.maxUnavailable",
            rolling.max_unavailable.of(100, false),
        );
        if surge == Some(0) && unavailable == Some(0) {
            errors.add(
                "spec.strategy.rollingUpdate",
                "maxSurge and maxUnavailable cannot both be 0: nothing could be replaced",
            );
        }
    }
    check_canary(&spec.strategy, &mut errors);
    check_every_node(spec, &mut errors);
    check_env(&spec.env, &mut errors);
    check_env_from(&spec.env_from, &mut errors);
    check_config_store(&spec.config, &mut errors);
    check_key_value(&spec.grants.key_value, &mut errors);
    check_volumes(spec, &mut errors);
    check_files(&spec.files, &mut errors);
    if spec.reload == crate::workload::Reload::Live
        && spec.execution != crate::workload::Execution::Http
    {
        errors.add(
            "spec.reload",
            "only http workloads reload live (a daemon reads its values when it starts): remove reload, or add execution: http",
        );
    }
    if let Some(at) = &spec.restarted_at {
        if crate::meta::parse_rfc3339(at).is_none() {
            errors.add(
                "spec.restartedAt",
                format!("{at:?} is not an RFC 3339 time (flotilla rollout restart writes it)"),
            );
        }
    }
    if spec.min_ready_seconds >= spec.progress_deadline_seconds {
        errors.add(
            "spec.minReadySeconds",
            format!(
                "{} is not less than progressDeadlineSeconds ({}): no rollout could finish; lower it or raise the deadline",
                spec.min_ready_seconds, spec.progress_deadline_seconds
            ),
        );
    }
    if spec.progress_deadline_seconds == 0 {
        errors.add(
            "spec.progressDeadlineSeconds",
            "must be at least 1 (600, the default, is ten minutes)",
        );
    }
    let requests = check_resources(
        "spec.resources.requests",
        &spec.resources.requests,
        &mut errors,
    );
    let limits = check_resources("spec.resources.limits", &spec.resources.limits, &mut errors);
    if spec.resources.requests.timeout.is_some() {
        errors.add(
            "spec.resources.requests.timeout",
            "a timeout is a limit, not a request: move it to spec.resources.limits.timeout",
        );
    }
    if let (Some(r), Some(l)) = (requests.0, limits.0) {
        if r > l {
            errors.add(
                "spec.resources.requests.memory",
                "must not be more than spec.resources.limits.memory",
            );
        }
    }
    if let (Some(r), Some(l)) = (requests.1, limits.1) {
        if r > l {
            errors.add(
                "spec.resources.requests.cpu",
                "must not be more than spec.resources.limits.cpu",
            );
        }
    }
    for (i, env) in spec.env.iter().enumerate() {
        if env.name.is_empty() || env.name.contains('=') || env.name.contains('\0') {
            errors.add(
                format!("spec.env[{i}].name"),
                format!("{:?} is not a variable name", env.name),
            );
        }
    }
    for (i, dir) in spec.dirs.iter().enumerate() {
        if !dir.host_path.starts_with('/') {
            errors.add(
                format!("spec.dirs[{i}].hostPath"),
                format!("{:?} must be an absolute path on the node", dir.host_path),
            );
        }
        if dir.guest_path.is_empty() {
            errors.add(
                format!("spec.dirs[{i}].guestPath"),
                "must not be empty (e.g. /data)",
            );
        }
    }
    for (which, probe) in [
        ("liveness", &spec.probes.liveness),
        ("readiness", &spec.probes.readiness),
        ("startup", &spec.probes.startup),
    ] {
        if let Some(probe) = probe {
            let path = format!("spec.probes.{which}");
            let http = spec.execution == crate::workload::Execution::Http;
            match (&probe.watchdog, &probe.http_get, http) {
                (Some(_), None, false) => {}
                (None, Some(get), true) => {
                    if !get.path.starts_with('/') {
                        errors.add(
                            format!("{path}.httpGet.path"),
                            format!("{:?} must start with / (e.g. /healthz)", get.path),
                        );
                    }
                }
                (Some(_), None, true) => errors.add(
                    format!("{path}.watchdog"),
                    "an http workload is not a running program: probe it with httpGet: {path: /healthz}",
                ),
                (None, Some(_), false) => errors.add(
                    format!("{path}.httpGet"),
                    "only execution: http workloads answer requests: probe a daemon with watchdog: {}",
                ),
                _ => errors.add(
                    path.clone(),
                    "give exactly one handler: watchdog: {} (daemons) or httpGet: {path: /healthz} (http workloads)",
                ),
            }
            let period = errors.check(&format!("{path}.period"), parse_duration(&probe.period));
            errors.check(&format!("{path}.timeout"), parse_duration(&probe.timeout));
            if probe.failure_threshold == 0 {
                errors.add(format!("{path}.failureThreshold"), "must be at least 1");
            }
            if let Some(period) = period {
                if period < MIN_PROBE_PERIOD {
                    // A zero period is a busy loop (an httpGet probe starts an
                    // instance per check); Kubernetes' minimum is 1s too.
                    errors.add(
                        format!("{path}.period"),
                        format!("{:?} is too short: a probe runs at most once a second (use 1s or more)", probe.period),
                    );
                } else if period
                    .checked_mul(probe.failure_threshold)
                    .is_none_or(|window| window > MAX_PROBE_WINDOW)
                {
                    errors.add(
                        format!("{path}.failureThreshold"),
                        format!("period × failureThreshold must be at most {MAX_PROBE_WINDOW:?} (365 days)"),
                    );
                }
            }
        }
    }
    check_http(spec, &mut errors);
    let backoff = &spec.restart_policy.backoff;
    let initial = errors.check(
        "spec.restartPolicy.backoff.initial",
        parse_duration(&backoff.initial),
    );
    let max = errors.check(
        "spec.restartPolicy.backoff.max",
        parse_duration(&backoff.max),
    );
    errors.check(
        "spec.restartPolicy.backoff.resetAfter",
        parse_duration(&backoff.reset_after),
    );
    if let Some(initial) = initial.filter(|i| *i < MIN_BACKOFF) {
        errors.add(
            "spec.restartPolicy.backoff.initial",
            format!("{initial:?} is too short: a crash loop without a pause starves the node (use 10ms or more)"),
        );
    }
    if let (Some(initial), Some(max)) = (initial, max) {
        if initial > max {
            errors.add(
                "spec.restartPolicy.backoff.initial",
                "must not be more than spec.restartPolicy.backoff.max",
            );
        }
    }
    if errors.0.is_empty() {
        Ok(())
    } else {
        Err(ValidationErrors(errors.0))
    }
}

/// Shortest probe period accepted.
pub const MIN_PROBE_PERIOD: std::time::Duration = std::time::Duration::from_secs(1);
/// Longest `period × failureThreshold` accepted.
const MAX_PROBE_WINDOW: std::time::Duration = std::time::Duration::from_secs(365 * 24 * 3600);
/// Shortest first restart delay accepted.
pub const MIN_BACKOFF: std::time::Duration = std::time::Duration::from_millis(10);

/// Checks a resource list; returns the parsed (memory bytes, cpu millicores).
fn check_resources(
    path: &str,
    list: &ResourceList,
    errors: &mut Collector,
) -> (Option<u64>, Option<u64>) {
    let memory = list
        .memory
        .as_deref()
        .and_then(|m| errors.check(&format!("{path}.memory"), parse_memory_bytes(m)));
    let cpu = list
        .cpu
        .as_deref()
        .and_then(|c| errors.check(&format!("{path}.cpu"), parse_cpu_millis(c)));
    if let Some(t) = list.timeout.as_deref() {
        errors.check(&format!("{path}.timeout"), parse_duration(t));
    }
    (memory, cpu)
}

#[cfg(test)]
mod tests {
    use super::check_host_port;

    #[test]
    fn an_every_node_workload_takes_no_replicas_canary_or_persistent_volumes() {
        let parse = |extra: &str| -> Vec<String> {
            let text = format!(
                "apiVersion: flotilla.dev/v1\nkind: Workload\nmetadata: {{name: c}}\nspec:\n  module: {{source: \"file:x.wasm\"}}\n  placement: {{everyNode: true}}\n{extra}"
            );
            let w: crate::workload::Workload = serde_yaml_ng::from_str(&text).unwrap();
            match super::validate_workload(&w) {
                Ok(()) => Vec::new(),
                Err(errors) => errors.0.iter().map(|e| e.path.clone()).collect(),
            }
        };
        assert!(parse("").is_empty());
        assert!(parse("  strategy: {type: Recreate}\n").is_empty());
        assert_eq!(parse("  replicas: 3\n"), ["spec.replicas"]);
        assert!(
            parse("  strategy: {rollingUpdate: {maxSurge: 0, maxUnavailable: 2}}\n").is_empty()
        );
        assert_eq!(
            parse("  strategy: {rollingUpdate: {maxUnavailable: 2}}\n"),
            ["spec.strategy.rollingUpdate.maxSurge"]
        );
        assert_eq!(
            parse("  strategy: {type: Canary, canary: {steps: [{setWeight: 10}]}}\n"),
            ["spec.strategy.type"]
        );
        assert_eq!(
            parse("  volumes: [{name: d, persistent: {size: 1Mi}}]\n"),
            ["spec.volumes"]
        );
    }

    #[test]
    fn only_host_port_is_an_address() {
        for good in [
            "10.0.0.5:8080",
            "[fd00::5]:8080",
            "node-a.example:1",
            "localhost:65535",
        ] {
            assert_eq!(check_host_port(good), Ok(()), "{good}");
        }
        for bad in [
            "169.254.169.254/latest/meta-data/#",
            "169.254.169.254/x#",
            "10.0.0.5",
            "10.0.0.5:0",
            "10.0.0.5:65536",
            "user@host:80",
            "http://host:80",
            "host:80/",
            "host:+80",
            ":80",
            "a b:80",
            "host:80#",
            "",
        ] {
            let err = check_host_port(bad).unwrap_err();
            assert!(err.contains("is not host:port"), "{bad}: {err}");
        }
    }
}
