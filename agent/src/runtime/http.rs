//! HTTP handlers: a fresh, pre-linked instance per request, under the same
//! memory/CPU/deadline limits as any run.
//!
//! Two kinds of handler:
//! - `wasi:http/proxy` components (what `wasmtime serve` and Spin run): the
//!   request becomes a `wasi:http` incoming-request resource and the
//!   component's `incoming-handler.handle` is called;
//! - preview-1 core modules through WAGI (the CGI convention): the request
//!   becomes CGI environment variables and stdin; the module prints headers,
//!   a blank line and the body on stdout.
//!
//! Whatever the guest does, the caller gets a response: a trap or a refused
//! memory growth is a 500, a passed deadline a 504, each with the reason in
//! its body and in [`Served::failure`] for logs and events.

use std::time::Instant;

use bytes::Bytes;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::{WasiHttpCtxView, WasiHttpView};

use super::module::{LoadedModule, Prepared};
use super::outcome::{ExitReason, Outcome};
use super::output::{CaptureBuffer, Stdio};
use super::run::{drive, finish, Failure, Limits, RunSpec};
use super::state::{ComponentState, InstanceLimits};

/// The body of a response from a handler (streamed from the guest, or whole).
pub type ResponseBody = UnsyncBoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// Largest WAGI response (stdout) kept; the rest is cut with a note in the log.
const WAGI_MAX_RESPONSE: usize = 16 << 20;

/// Largest WAGI request body for a handler without a memory limit.
const WAGI_MAX_BODY: u64 = 64 << 20;

/// Components get `wasi:http` (only the handlers' linker provides it).
impl WasiHttpView for ComponentState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.host.outgoing,
        }
    }
}

/// What one request needs besides the request itself.
#[derive(Clone, Default)]
pub struct HandlerSpec {
    /// Environment variables (a WAGI module also gets the CGI variables).
    pub env: Vec<(String, String)>,
    /// Directories the guest sees (read-only `files` mounts).
    pub dirs: Vec<super::Preopen>,
    /// Memory, CPU and time limits of one request.
    pub limits: Limits,
    /// Where the guest's stderr (and a component's stdout) goes.
    pub log: Option<super::LogWriter>,
    /// Its host-api capabilities: what it was granted, its
    /// `wasi:config/store` values, where outgoing requests go (none:
    /// refused).
    pub host: flotilla_host_api::HostCtx,
}

/// A response, and how the guest's run ended when it did not end well.
pub struct Served {
    /// What to send back.
    pub response: http::Response<ResponseBody>,
    /// Why the guest failed (trap, OOMKilled, DeadlineExceeded…), if it did.
    pub failure: Option<Outcome>,
}

/// A whole-body response.
pub fn plain_response(status: u16, text: String) -> http::Response<ResponseBody> {
    let mut response = http::Response::new(
        Full::new(Bytes::from(text))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = http::StatusCode::from_u16(status).unwrap_or_default();
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// The error response for a run that ended badly.
fn failed(outcome: Outcome, name: &str) -> Served {
    let (status, what) = match outcome.reason {
        ExitReason::DeadlineExceeded => (504, "ran past its deadline"),
        ExitReason::OomKilled => (500, "ran out of memory (its memory limit refused a growth)"),
        ExitReason::Trap => (500, "trapped"),
        ExitReason::Error | ExitReason::Completed => (500, "failed"),
    };
    let detail = outcome
        .trap
        .clone()
        .or_else(|| outcome.message.clone())
        .unwrap_or_default();
    let text = format!("handler {name} {what}: {} {detail}\n", outcome.reason);
    Served {
        response: plain_response(status, text),
        failure: Some(outcome),
    }
}

impl LoadedModule {
    /// Whether this module can serve HTTP: a `wasi:http/proxy` component, or
    /// a command core module (WAGI).
    pub fn is_http_handler(&self) -> bool {
        match &self.prepared {
            Prepared::Proxy(_) => true,
            Prepared::Core(pre) => pre.module().get_export("_start").is_some(),
            Prepared::Component(_) => false,
        }
    }

    /// Serves one request with a fresh instance.
    pub async fn serve<B>(&self, request: http::Request<B>, spec: &HandlerSpec) -> Served
    where
        B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        if let Err(e) = self.check_grants(&spec.host.granted) {
            return Served {
                response: plain_response(500, format!("{e}\n")),
                failure: None,
            };
        }
        match &self.prepared {
            Prepared::Proxy(pre) => self.serve_component(pre, request, spec).await,
            Prepared::Core(_) => self.serve_wagi(request, spec).await,
            Prepared::Component(_) => Served {
                response: plain_response(
                    500,
                    format!(
                        "{} is a command component (wasi:cli/run), not an HTTP handler\n",
                        self.name
                    ),
                ),
                failure: None,
            },
        }
    }

    async fn serve_component<B>(
        &self,
        pre: &wasmtime_wasi_http::p2::bindings::ProxyPre<ComponentState>,
        request: http::Request<B>,
        spec: &HandlerSpec,
    ) -> Served
    where
        B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let started = Instant::now();
        let mut wasi = WasiCtxBuilder::new();
        wasi.envs(&spec.env);
        for dir in &spec.dirs {
            let perms = if dir.read_only {
                wasmtime_wasi::FsPerms::ReadOnly
            } else {
                wasmtime_wasi::FsPerms::ReadWrite
            };
            if let Err(e) = wasi.preopened_dir(&dir.host, &dir.guest, perms) {
                return Served {
                    response: plain_response(
                        500,
                        format!("cannot show {} to the handler: {e:#}\n", dir.guest),
                    ),
                    failure: None,
                };
            }
        }
        if let Some(log) = &spec.log {
            wasi.stdout(super::output::AppendStream(log.clone()));
            wasi.stderr(super::output::AppendStream(log.clone()));
        }
        let limits = InstanceLimits::new(spec.limits.memory_bytes, spec.limits.cpu_millis);
        let meter = limits.cpu.clone();
        let mut store = ComponentState::new_store(&self.runtime.engine, &mut wasi, limits);
        store.data_mut().host = spec.host.clone();
        let request = request.map(|body| {
            body.map_err(|e| {
                wasmtime_wasi_http::p2::bindings::http::types::ErrorCode::InternalError(Some(
                    e.into().to_string(),
                ))
            })
            .boxed_unsync()
        });
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let resources = store
            .data_mut()
            .http()
            .new_incoming_request(Scheme::Http, request)
            .and_then(|req| {
                let out = store.data_mut().http().new_response_outparam(sender)?;
                Ok((req, out))
            });
        let (req, out) = match resources {
            Ok(pair) => pair,
            Err(e) => {
                return Served {
                    response: plain_response(
                        500,
                        format!("cannot pass the request to {}: {e:#}\n", self.name),
                    ),
                    failure: None,
                }
            }
        };
        let pre = pre.clone();
        let timeout = spec.limits.timeout;
        let runtime = self.runtime.clone();
        // The guest runs in its own task: it may keep streaming the body
        // after it has set the response.
        let run = tokio::spawn(async move {
            let _running = runtime.ticker.enter();
            let handle = async {
                let proxy = pre
                    .instantiate_async(&mut store)
                    .await
                    .map_err(Failure::Instantiate)?;
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, req, out)
                    .await
                    .map_err(Failure::Run)?;
                Ok(0)
            };
            let result = drive(handle, &meter, timeout).await;
            finish(&mut store, result, &meter, started, timeout)
        });
        match receiver.await {
            Ok(Ok(response)) => Served {
                response: response.map(|body| body.map_err(Into::into).boxed_unsync()),
                failure: None,
            },
            Ok(Err(code)) => Served {
                response: plain_response(
                    500,
                    format!("handler {} answered with error {code:?}\n", self.name),
                ),
                failure: None,
            },
            // The guest ended without setting a response: say why.
            Err(_) => match run.await {
                Ok(outcome) if outcome.reason != ExitReason::Completed => {
                    failed(outcome, &self.name)
                }
                Ok(_) => Served {
                    response: plain_response(
                        500,
                        format!(
                            "handler {} returned without setting a response\n",
                            self.name
                        ),
                    ),
                    failure: None,
                },
                Err(e) => Served {
                    response: plain_response(
                        500,
                        format!("handler {} task failed: {e}\n", self.name),
                    ),
                    failure: None,
                },
            },
        }
    }

    async fn serve_wagi<B>(&self, request: http::Request<B>, spec: &HandlerSpec) -> Served
    where
        B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let (parts, body) = request.into_parts();
        // The body is streamed to the guest's stdin as it arrives, never
        // held whole: the guest's memory limit is what it may take in.
        let cap = spec.limits.memory_bytes.unwrap_or(WAGI_MAX_BODY);
        let declared = parts
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if let Some(length) = declared.filter(|&n| n > cap) {
            return too_large(length, cap, &self.name);
        }
        let stdin = super::Stdin::stream(http_body_util::BodyDataStream::new(body), cap);
        let stdout = CaptureBuffer::new(WAGI_MAX_RESPONSE);
        let mut env = cgi_environment(&parts, declared);
        env.extend(spec.env.iter().cloned());
        let run = RunSpec {
            program_name: self.name.clone(),
            env,
            limits: spec.limits.clone(),
            stdout: Stdio::Capture(stdout.clone()),
            stderr: spec.log.clone().map_or(Stdio::Null, Stdio::Log),
            stdin: Some(stdin.clone()),
            dirs: spec.dirs.clone(),
            ..RunSpec::default()
        };
        let outcome = self.run(run).await;
        if stdin.overflowed() {
            return too_large(cap.saturating_add(1), cap, &self.name);
        }
        match outcome {
            Ok(outcome) if outcome.reason == ExitReason::Completed => Served {
                response: wagi_response(&stdout.contents(), &self.name),
                failure: None,
            },
            Ok(outcome) => failed(outcome, &self.name),
            Err(e) => Served {
                response: plain_response(500, format!("{e}\n")),
                failure: None,
            },
        }
    }
}

/// 413 for a WAGI body over `cap`.
fn too_large(length: u64, cap: u64, name: &str) -> Served {
    let at_least = if length > cap { "more than " } else { "" };
    Served {
        response: plain_response(
            413,
            format!(
                "request body of {at_least}{} bytes is larger than handler {name} may take ({cap} bytes, its memory limit): send a smaller body, or raise spec.resources.limits.memory\n",
                if length > cap { cap } else { length }
            ),
        ),
        failure: None,
    }
}

/// The CGI variables of a request (RFC 3875), as WAGI passes them.
fn cgi_environment(
    parts: &http::request::Parts,
    content_length: Option<u64>,
) -> Vec<(String, String)> {
    let mut env = vec![
        ("REQUEST_METHOD".to_string(), parts.method.to_string()),
        ("PATH_INFO".to_string(), parts.uri.path().to_string()),
        (
            "QUERY_STRING".to_string(),
            parts.uri.query().unwrap_or_default().to_string(),
        ),
        (
            "SERVER_PROTOCOL".to_string(),
            format!("{:?}", parts.version),
        ),
        ("GATEWAY_INTERFACE".to_string(), "CGI/1.1".to_string()),
        ("SERVER_SOFTWARE".to_string(), "flotilla".to_string()),
        // Unknown for a chunked body: the guest reads stdin to its end.
        (
            "CONTENT_LENGTH".to_string(),
            content_length.map(|n| n.to_string()).unwrap_or_default(),
        ),
        ("X_FULL_URL".to_string(), parts.uri.to_string()),
    ];
    for (name, value) in &parts.headers {
        let Ok(value) = value.to_str() else { continue };
        let key = name.as_str().to_ascii_uppercase().replace('-', "_");
        match key.as_str() {
            "CONTENT_TYPE" => env.push((key, value.to_string())),
            // Never pass credentials to a guest through the environment.
            "AUTHORIZATION" | "PROXY_AUTHORIZATION" => {}
            "HOST" => {
                env.push((
                    "SERVER_NAME".into(),
                    value.split(':').next().unwrap_or_default().into(),
                ));
                env.push(("HTTP_HOST".into(), value.to_string()));
            }
            _ => env.push((format!("HTTP_{key}"), value.to_string())),
        }
    }
    env
}

/// The response a WAGI module's stdout spells (see `flotilla_cgi`), or a
/// 500 naming the handler and what is wrong with its output.
fn wagi_response(stdout: &[u8], name: &str) -> http::Response<ResponseBody> {
    match flotilla_cgi::parse(stdout) {
        Ok(response) => response.map(|body| {
            Full::new(body)
                .map_err(|never| match never {})
                .boxed_unsync()
        }),
        Err(e) => plain_response(500, format!("handler {name} {e}\n")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_wagi_output_is_a_500_naming_the_handler() {
        assert_eq!(wagi_response(b"Status: 201\n\nmade", "t").status(), 201);
        let bad = wagi_response(b"no header block", "hello");
        assert_eq!(bad.status(), 500);
    }

    #[test]
    fn cgi_variables_leave_credentials_out() {
        let request = http::Request::builder()
            .method("POST")
            .uri("/a/b?x=1")
            .header("host", "hello.local:8080")
            .header("authorization", "Bearer secret")
            .header("x-trace", "t1")
            .body(())
            .unwrap();
        let (parts, ()) = request.into_parts();
        let env = cgi_environment(&parts, Some(3));
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("QUERY_STRING"), Some("x=1"));
        assert_eq!(get("PATH_INFO"), Some("/a/b"));
        assert_eq!(get("SERVER_NAME"), Some("hello.local"));
        assert_eq!(get("HTTP_X_TRACE"), Some("t1"));
        assert_eq!(get("HTTP_AUTHORIZATION"), None);
    }
}
