//! A WAGI guest's output (CGI headers, a blank line, the body): any bytes,
//! no panic; what parses keeps the body that followed the header block.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|out: &[u8]| {
    if let Ok(response) = flotilla_cgi::parse(out) {
        assert!(
            out.ends_with(response.body()),
            "the body is the output's tail"
        );
        assert!(response.status().as_u16() >= 100);
    }
});
