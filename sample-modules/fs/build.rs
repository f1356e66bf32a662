fn main() {
    // A command: wasi-libc's entry point calls main (see ../.cargo/config.toml).
    println!("cargo:rustc-link-arg-bins=/usr/lib/wasm32-wasi/crt1-command.o");
}
