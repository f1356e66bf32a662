fn main() {
    // A command: wasi-libc's entry point calls main (see ../.cargo/config.toml).
    println!("cargo:rustc-link-arg-bins=/usr/lib/wasm32-wasi/crt1-command.o");
    // A 16 MiB shadow stack so `stack-overflow` hits the engine's stack limit first.
    println!("cargo:rustc-link-arg-bins=-zstack-size=16777216");
}
