//! `sleeper [MS] [COUNT]`: a long-running daemon that prints a tick every MS
//! milliseconds (default 1000), forever unless COUNT ticks are given.
use std::time::Duration;

fn main() {
    let mut args = std::env::args().skip(1);
    let ms: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let count: Option<u64> = args.next().and_then(|a| a.parse().ok());
    let mut tick = 0u64;
    while count.is_none_or(|c| tick < c) {
        tick += 1;
        println!("tick {tick}");
        std::thread::sleep(Duration::from_millis(ms));
    }
}
