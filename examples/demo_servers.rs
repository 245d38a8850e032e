//! The servers behind `scripts/demo.sh`: a sample layout written by the real registry (the test
//! fixture, pushed through its API), and an empty Harbor (the emulator from the test support code, in
//! front of a second real registry). Prints `SOURCE=<storage root>` and `TARGET=<url>`, then serves until
//! its standard input closes.

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::{Read, Write};

fn main() {
    let work = std::path::PathBuf::from(std::env::args().nth(1).expect("usage: demo_servers WORKDIR"));
    let source_root = work.join("source");
    std::fs::create_dir_all(&source_root).unwrap();
    {
        let source = support::Registry::start(&source_root);
        support::images::push_fixture(&source);
    }
    let harbor_root = work.join("harbor");
    std::fs::create_dir_all(&harbor_root).unwrap();
    let harbor = support::harbor::HarborEmulator::start(&harbor_root);
    println!("SOURCE={}", source_root.display());
    println!("TARGET={}", harbor.url);
    std::io::stdout().flush().unwrap();
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
}
