//! Serving a request with a preview-1 core module through WAGI (the CGI
//! convention): the request becomes CGI environment variables and stdin;
//! the module prints headers, a blank line and the body on stdout.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};

use super::handler::{failed, plain_response, HandlerSpec, ResponseBody, Served};
use super::module::LoadedModule;
use super::outcome::ExitReason;
use super::output::{CaptureBuffer, Stdio};
use super::run::RunSpec;

/// Largest WAGI response (stdout) kept; the rest is cut with a note in the log.
const WAGI_MAX_RESPONSE: usize = 16 << 20;

/// Largest WAGI request body for a handler without a memory limit.
const WAGI_MAX_BODY: u64 = 64 << 20;

/// Serves `request` with a run of `module` (a command core module).
pub(super) async fn serve<B>(
    module: &LoadedModule,
    request: http::Request<B>,
    spec: &HandlerSpec,
) -> Served
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
        return too_large(length, cap, &module.name);
    }
    let stdin = super::Stdin::stream(http_body_util::BodyDataStream::new(body), cap);
    let stdout = CaptureBuffer::new(WAGI_MAX_RESPONSE);
    let mut env = cgi_environment(&parts, declared);
    env.extend(spec.env.iter().cloned());
    let run = RunSpec {
        program_name: module.name.clone(),
        env,
        limits: spec.limits.clone(),
        stdout: Stdio::Capture(stdout.clone()),
        stderr: spec.log.clone().map_or(Stdio::Null, Stdio::Log),
        stdin: Some(stdin.clone()),
        dirs: spec.dirs.clone(),
        usage: spec.usage.clone(),
        ..RunSpec::default()
    };
    let outcome = module.run(run).await;
    if stdin.overflowed() {
        return too_large(cap.saturating_add(1), cap, &module.name);
    }
    match outcome {
        Ok(outcome) if outcome.reason == ExitReason::Completed => Served {
            response: wagi_response(&stdout.contents(), &module.name),
            failure: None,
        },
        Ok(outcome) => failed(outcome, &module.name),
        Err(e) => Served {
            response: plain_response(500, format!("{e}\n")),
            failure: None,
        },
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
