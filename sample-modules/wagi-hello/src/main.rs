//! An HTTP handler through WAGI (the CGI convention for WebAssembly): the
//! request arrives as environment variables and stdin, the response leaves on
//! stdout as headers, a blank line, and the body. `/echo` echoes the request,
//! `/env/NAME` answers the variable `NAME`, `/file/PATH` the file `/PATH`
//! (what a workload's Configs and Secrets give it).

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
    if let Some(name) = path.strip_prefix("/env/") {
        let value = std::env::var(name).unwrap_or_else(|_| "<unset>".into());
        print!("Content-Type: text/plain\r\n\r\n{name}={value}\n");
        return;
    }
    if let Some(file) = path.strip_prefix("/file") {
        match std::fs::read_to_string(file) {
            Ok(text) => print!("Content-Type: text/plain\r\n\r\n{text}\n"),
            Err(e) => print!("Content-Type: text/plain\r\nStatus: 404 Not Found\r\n\r\n{file}: {e}\n"),
        }
        return;
    }
    print!("Content-Type: text/plain\r\n\r\nhello from flotilla\n");
}
