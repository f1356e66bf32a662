//! `hello`: prints a greeting, the `GREETING` env var and its args, then exits 0.
fn main() {
    println!("Hello from a Flotilla guest!");
    let greeting = std::env::var("GREETING").unwrap_or_else(|_| "<unset>".to_string());
    println!("GREETING={greeting}");
    let args: Vec<String> = std::env::args().skip(1).collect();
    println!("args={args:?}");
}
