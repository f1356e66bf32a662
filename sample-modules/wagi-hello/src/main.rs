//! An HTTP handler through WAGI (the CGI convention for WebAssembly): the
//! request arrives as environment variables and stdin, the response leaves on
//! stdout as headers, a blank line, and the body.

use std::io::Read;

fn main() {
    let method = std::env::var("REQUEST_METHOD").unwrap_or_default();
    let path = std::env::var("PATH_INFO").unwrap_or_default();
    let mut body = String::new();
    let _ = std::io::stdin().read_to_string(&mut body);
    if path == "/echo" {
        print!("Content-Type: text/plain\r\nStatus: 200 OK\r\n\r\n{method} {path}\n{body}");
        return;
    }
    print!("Content-Type: text/plain\r\n\r\nhello from flotilla\n");
}
