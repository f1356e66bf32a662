fn main() {
    // A library exporting wasi:cli/run: wasi-libc's reactor start file, so
    // its constructors run once (a command's exports would each run them).
    println!("cargo:rustc-link-arg-cdylib=/usr/lib/wasm32-wasi/crt1-reactor.o");
}
