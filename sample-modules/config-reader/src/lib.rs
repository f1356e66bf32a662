//! `config-reader [once] [file:PATH | env:NAME]...`: prints what it is
//! configured with, one line each, sorted:
//! - `config KEY=VALUE` for every value `wasi:config/store` gives it;
//! - `file PATH=CONTENTS` for each `file:` argument (a Secret's file mount);
//! - `env NAME=VALUE` for each `env:` argument (`<unset>` if missing);
//!
//! then sleeps, kicking the Flotilla watchdog every 200 ms (a daemon), or
//! exits with `once`. A component of the `flotilla:host/command` world: it
//! imports `wasi:config/store` and `flotilla:host/watchdog` and exports
//! `wasi:cli/run`, through bindings generated from host-api/wit.

wit_bindgen::generate!({
    path: "../../host-api/wit",
    world: "flotilla:host/command",
    generate_all,
});

use flotilla::host::watchdog;
use wasi::config::store;

struct Reader;

export!(Reader);

impl exports::wasi::cli::run::Guest for Reader {
    fn run() -> Result<(), ()> {
        read();
        Ok(())
    }
}

fn read() {
    let mut once = false;
    for arg in std::env::args().skip(1) {
        if arg == "once" {
            once = true;
        } else if let Some(path) = arg.strip_prefix("file:") {
            match std::fs::read_to_string(path) {
                Ok(text) => println!("file {path}={}", text.trim_end()),
                Err(e) => println!("file {path}: {e}"),
            }
        } else if let Some(name) = arg.strip_prefix("env:") {
            let value = std::env::var(name).unwrap_or_else(|_| "<unset>".into());
            println!("env {name}={value}");
        }
    }
    match store::get_all() {
        Ok(mut values) => {
            values.sort();
            for (key, value) in values {
                println!("config {key}={value}");
            }
        }
        Err(e) => println!("config error: {e:?}"),
    }
    if once {
        return;
    }
    loop {
        watchdog::kick();
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}
