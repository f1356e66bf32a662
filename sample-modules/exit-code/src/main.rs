//! `exit-code CODE`: exits with the given code (0 when none is given).
fn main() {
    let code = std::env::args()
        .nth(1)
        .map(|a| a.parse::<i32>().unwrap_or_else(|_| panic!("not an exit code: {a}")))
        .unwrap_or(0);
    println!("exiting with {code}");
    std::process::exit(code);
}
