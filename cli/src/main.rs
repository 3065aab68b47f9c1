//! The `ferry` binary: see `ferry --help`.

use clap::Parser as _;
use ferry::commands::{Cli, run};

fn main() {
    let cli = Cli::parse();
    let code = actix_rt::System::new().block_on(run(cli));
    std::process::exit(code);
}
