//! The `ferry` binary: see `ferry --help`.

use clap::Parser as _;
use ferry::commands::{Cli, run};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = Cli::parse();
    let code = actix_rt::System::new().block_on(run(cli));
    std::process::exit(code);
}
