//! The `ferry` binary: see `ferry --help`.

use clap::Parser as _;
use ferry::commands::{Cli, run};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // No transparent huge pages for this process: mimalloc asks for them
    // (madvise) on its arenas, and each first touch of a 2 MiB region then
    // zeroes all of it. A daemon that grows by some 40 MiB of short-lived
    // body buffers during a burst of small files spent about a quarter of
    // the machine's CPU in that zeroing (bench/RESULTS.md, "Huge pages
    // off"). This binary's choice, like the allocator; the library leaves
    // both to its embedder. Best effort: without it only speed differs.
    let _ = rustix::thread::disable_transparent_huge_pages(true);
    let cli = Cli::parse();
    let code = actix_rt::System::new().block_on(run(cli));
    std::process::exit(code);
}
