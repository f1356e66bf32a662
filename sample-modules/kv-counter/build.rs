fn main() {
    // A library (an HTTP handler the host calls per request): wasi-libc's
    // reactor start file, no main.
    println!("cargo:rustc-link-arg-cdylib=/usr/lib/wasm32-wasi/crt1-reactor.o");
}
