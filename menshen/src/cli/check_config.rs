//! `menshen check-config FILE`: is a provider file valid?

use std::path::PathBuf;

use clap::Args;

use super::exit::OrInvalid as _;
use crate::config::file::ProviderFile;

// The command's help is its variant's.
#[derive(Debug, Args)]
pub struct CheckConfigArgs {
    /// The provider file (TOML).
    file: PathBuf,
    /// Accept addresses that are not public unicast, as `serve
    /// --allow-private-addresses` does.
    #[arg(long, env = "MENSHEN_ALLOW_PRIVATE_ADDRESSES")]
    allow_private_addresses: bool,
}

/// The file's counts, its warnings on stderr; a broken file is invalid
/// input.
pub fn run(args: CheckConfigArgs) -> anyhow::Result<()> {
    let allowed = crate::inventory::validate::Policy {
        allow_private_addresses: args.allow_private_addresses,
    };
    let file = &args.file;
    let f = ProviderFile::load_with(file, allowed).or_invalid()?;
    for warning in f.warnings() {
        eprintln!("warning: {}: {warning}", file.display());
    }
    println!(
        "{}: valid ({} locations, {} gateways, {} bridges)",
        file.display(),
        f.locations.len(),
        f.gateways.len(),
        f.bridges.len()
    );
    Ok(())
}
