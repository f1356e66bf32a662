//! `trapper KIND`: dies of a real WebAssembly trap of the chosen kind:
//! `unreachable`, `div0` (integer divide by zero), `oob` (out-of-bounds memory
//! access) or `stack-overflow` (unbounded recursion).
#![feature(core_intrinsics)]
#![allow(internal_features)]
use std::hint::black_box;

#[inline(never)]
fn recurse(depth: u64, a: u64, b: u64) -> u64 {
    // Only wasm locals: every frame lives on the engine's stack, so the engine's
    // stack limit trips (the guest's own shadow stack is made large at link time).
    if black_box(depth) == u64::MAX {
        return a;
    }
    recurse(depth + 1, b, a ^ depth).wrapping_add(1)
}

fn main() {
    let kind = std::env::args().nth(1).unwrap_or_default();
    println!("trapping with {kind}");
    match kind.as_str() {
        "unreachable" => core::arch::wasm32::unreachable(),
        "div0" => {
            // The intrinsic lowers to a bare `i32.div_s`: the trap comes from the
            // engine, not from Rust's divide-by-zero check.
            let q = unsafe { core::intrinsics::unchecked_div(black_box(1i32), black_box(0i32)) };
            println!("{q}");
        }
        "oob" => {
            let p = black_box(0xFFFF_FF00usize) as *const u32;
            let v = unsafe { core::ptr::read_volatile(p) };
            println!("{v}");
        }
        "stack-overflow" => println!("{}", recurse(0, 1, 2)),
        other => {
            eprintln!("unknown trap kind {other:?}: use unreachable, div0, oob or stack-overflow");
            std::process::exit(2);
        }
    }
}
