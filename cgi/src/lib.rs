//! What a WAGI guest prints is its HTTP response: CGI header lines
//! (`Status:` sets the code, `Location:` alone means 302), a blank line, the
//! body. This crate turns those bytes into an `http::Response`, or says
//! what is wrong with them.
//!
//! It is a crate of its own, with no runtime below it, so the parser — which
//! reads whatever a guest chose to print — can be fuzzed without building
//! the Wasm engine.

use bytes::Bytes;

/// Why a guest's output is not a response.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CgiError {
    /// No blank line ends a header block.
    #[error("printed no CGI header block (headers, a blank line, then the body)")]
    NoHeaderBlock,
    /// A header line without a colon.
    #[error("printed a malformed CGI header: {0:?}")]
    MalformedHeader(String),
    /// A header name or value, or the status, that HTTP does not allow.
    #[error("printed an invalid response head: {0}")]
    InvalidHead(String),
}

/// The response `stdout` spells.
pub fn parse(stdout: &[u8]) -> Result<http::Response<Bytes>, CgiError> {
    let (head_end, body_start) = find_blank_line(stdout).ok_or(CgiError::NoHeaderBlock)?;
    let head = String::from_utf8_lossy(&stdout[..head_end]);
    let mut builder = http::Response::builder();
    let mut status = None;
    let mut location = false;
    for line in head.lines() {
        let (key, value) = line
            .split_once(':')
            .ok_or_else(|| CgiError::MalformedHeader(line.to_string()))?;
        let value = value.trim();
        if key.eq_ignore_ascii_case("status") {
            status = value
                .split_whitespace()
                .next()
                .and_then(|c| c.parse::<u16>().ok());
            continue;
        }
        location |= key.eq_ignore_ascii_case("location");
        builder = builder.header(key.trim(), value);
    }
    let status = status.unwrap_or(if location { 302 } else { 200 });
    builder
        .status(status)
        .body(Bytes::copy_from_slice(&stdout[body_start..]))
        .map_err(|e| CgiError::InvalidHead(e.to_string()))
}

/// Where the header block ends and the body starts (`\r\n\r\n` or `\n\n`,
/// whichever comes first).
fn find_blank_line(out: &[u8]) -> Option<(usize, usize)> {
    let crlf = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, i + 4));
    let lf = out
        .windows(2)
        .position(|w| w == b"\n\n")
        .map(|i| (i, i + 2));
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        /// Whatever a WAGI guest prints, the parser answers.
        #[test]
        fn any_output_is_read_without_a_panic(out in prop::collection::vec(any::<u8>(), 0..400)) {
            let _ = parse(&out);
        }

        #[test]
        fn a_well_formed_header_block_keeps_its_body(
            head in "([A-Za-z-]{1,12}:[ -~]{0,20}\r?\n){0,6}",
            body in "[ -~]{0,20}",
        ) {
            let out = format!("{head}\r\n{body}");
            if let Ok(response) = parse(out.as_bytes()) {
                prop_assert!(response.status().as_u16() >= 100);
                prop_assert_eq!(response.body().as_ref(), body.as_bytes());
            }
        }
    }

    #[test]
    fn headers_status_and_body() {
        let response =
            parse(b"Content-Type: text/plain\r\nStatus: 201 Created\r\n\r\nmade\n").unwrap();
        assert_eq!(response.status(), 201);
        assert_eq!(response.headers()["content-type"], "text/plain");
        assert_eq!(response.body().as_ref(), b"made\n");
        assert_eq!(parse(b"Location: /elsewhere\n\n").unwrap().status(), 302);
        assert_eq!(
            parse(b"no header block").err(),
            Some(CgiError::NoHeaderBlock)
        );
        assert_eq!(
            parse(b"bad header\n\n").err(),
            Some(CgiError::MalformedHeader("bad header".into()))
        );
        assert!(matches!(
            parse(b"Status: 1000\n\n"),
            Err(CgiError::InvalidHead(_))
        ));
    }
}
