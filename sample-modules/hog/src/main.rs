//! `hog [STEP_MIB]`: allocates (and touches) memory in 1 MiB steps until an
//! allocation fails, printing how far it got, then dies of it the way a real
//! program does (`handle_alloc_error` aborts).
use std::alloc::Layout;

fn main() {
    let step_mib: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(1);
    let step = step_mib << 20;
    let mut held: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut block: Vec<u8> = Vec::new();
        if block.try_reserve_exact(step).is_err() {
            println!("allocation failed after {} MiB", held.len() * step_mib);
            std::alloc::handle_alloc_error(Layout::array::<u8>(step).expect("layout"));
        }
        block.resize(step, 0xA5);
        held.push(block);
        println!("allocated {} MiB", held.len() * step_mib);
    }
}
