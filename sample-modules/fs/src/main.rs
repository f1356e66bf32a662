//! `fs [DIR [BYTES [SLEEP_MS]]]`: lists, reads and writes its preopened dir
//! (default `/data`), then tries to escape it and prints what happened to
//! each attempt: `escape <path>: denied (<error>)` or `escape <path>:
//! ALLOWED`. With BYTES, it then writes a file of that many bytes
//! (`big.bin`); with SLEEP_MS, it then sleeps that long before exiting.
use std::fs;
use std::io::Write;

fn main() {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "/data".to_string());
    match fs::read_dir(&dir) {
        Ok(entries) => {
            for entry in entries.flatten() {
                let path = entry.path();
                match fs::read_to_string(&path) {
                    Ok(text) => println!("read {}: {:?}", path.display(), text.trim_end()),
                    Err(e) => println!("list {} ({e})", path.display()),
                }
            }
        }
        Err(e) => println!("cannot list {dir}: {e}"),
    }
    let out = format!("{dir}/written-by-guest.txt");
    match fs::File::create(&out).and_then(|mut f| f.write_all(b"hello from the guest\n")) {
        Ok(()) => println!("write {out}: ok"),
        Err(e) => println!("write {out}: failed ({e})"),
    }

    let attempts = [
        format!("{dir}/../etc/passwd"),
        format!("{dir}/../../../../etc/passwd"),
        "../etc/passwd".to_string(),
        "/etc/passwd".to_string(),
        "/".to_string(),
        format!("{dir}/escape-link/passwd"),
    ];
    for path in &attempts {
        match fs::read(path) {
            Ok(_) => println!("escape {path}: ALLOWED"),
            Err(e) => match fs::read_dir(path) {
                Ok(_) => println!("escape {path}: ALLOWED (listed)"),
                Err(_) => println!("escape {path}: denied ({e})"),
            },
        }
    }
    let outside = format!("{dir}/../escaped.txt");
    match fs::write(&outside, b"escaped") {
        Ok(()) => println!("escape write {outside}: ALLOWED"),
        Err(e) => println!("escape write {outside}: denied ({e})"),
    }
    let mut args = std::env::args().skip(2);
    if let Some(bytes) = args.next().and_then(|b| b.parse::<usize>().ok()) {
        let big = format!("{dir}/big.bin");
        match fs::write(&big, vec![b'x'; bytes]) {
            Ok(()) => println!("wrote {big}: {bytes} bytes"),
            Err(e) => println!("write {big}: failed ({e})"),
        }
    }
    if let Some(ms) = args.next().and_then(|m| m.parse::<u64>().ok()) {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
}
