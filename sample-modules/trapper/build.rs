fn main() {
    // A 16 MiB shadow stack so `stack-overflow` hits the engine's stack limit first.
    println!("cargo:rustc-link-arg-bins=-zstack-size=16777216");
}
