//! `watchdog [MS] [KICKS] [QUIET]`: a daemon that ticks every MS milliseconds
//! (default 200); after QUIET silent ticks (default 0: a slow start) it kicks
//! the Flotilla watchdog on each of the next KICKS ticks (default: forever),
//! then keeps running without kicking — a hung process, as a liveness probe
//! sees it. Its bindings are generated from host-api/wit; it runs as a core
//! module and as a component.

wit_bindgen::generate!({
    path: "../../host-api/wit",
    world: "flotilla:host/imports",
});

fn main() {
    let mut args = std::env::args().skip(1);
    let ms: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(200);
    let kicks: Option<u64> = args.next().and_then(|a| a.parse().ok());
    let quiet: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(0);
    for tick in 0u64.. {
        if tick < quiet {
            println!("tick {tick}: starting");
        } else if kicks.is_none_or(|k| tick - quiet < k) {
            flotilla::host::watchdog::kick();
            println!("tick {tick}: kicked");
        } else {
            println!("tick {tick}: hung");
        }
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
}
