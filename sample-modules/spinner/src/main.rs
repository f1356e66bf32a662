//! `spinner [ITERATIONS]`: a CPU-bound busy loop; forever unless a count is given
//! (then it prints the checksum and exits 0, which the benchmarks use).
use std::hint::black_box;

fn spin(iterations: u64) -> u64 {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in 0..iterations {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x = x.wrapping_add(black_box(i));
    }
    x
}

fn main() {
    match std::env::args().nth(1).and_then(|a| a.parse::<u64>().ok()) {
        Some(n) => println!("checksum {}", spin(n)),
        None => loop {
            black_box(spin(1 << 20));
        },
    }
}
