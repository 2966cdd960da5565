//! `menshen import`: a LEAP API v3 eip-service.json (and provider.json) as
//! a provider file.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;

use super::Invalid;
use super::args::read_file;
use crate::config::import_v3::{self, ImportOptions};

// The command's help is its variant's.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The v3 eip-service.json.
    eip_service: PathBuf,
    /// The v3 provider.json (domain, API address, names).
    #[arg(long)]
    provider: Option<PathBuf>,
    /// The provider's domain, if not from --provider.
    #[arg(long)]
    domain: Option<String>,
    /// Where clients reach the v5 API, if not from --provider.
    #[arg(long)]
    api_uri: Option<String>,
    /// Write the provider file here instead of to stdout.
    #[arg(long, short)]
    output: Option<PathBuf>,
}

pub fn run(args: ImportArgs) -> anyhow::Result<()> {
    let eip = read_file(&args.eip_service)?;
    let provider = args.provider.as_deref().map(read_file).transpose()?;
    let options = ImportOptions {
        domain: args.domain,
        api_uri: args.api_uri,
    };
    let text = import_v3::import(&eip, provider.as_deref(), &options)
        .map_err(|e| Invalid::err(format!("importing {}: {e:#}", args.eip_service.display())))?;
    match args.output {
        Some(path) => {
            std::fs::write(&path, &text)
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!("wrote {}", path.display());
        }
        None => print!("{text}"),
    }
    Ok(())
}
