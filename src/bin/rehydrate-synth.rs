//! Writes a synthetic registry storage layout (for tests, benchmarks and the demo) and its truth.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

use rehydrate::synth::{generate, SynthSpec};

/// Write a synthetic registry storage layout, exactly as the registry's filesystem driver lays it out.
#[derive(Debug, Parser)]
#[command(name = "rehydrate-synth", version)]
struct Args {
    /// The storage root to write (it will hold docker/registry/v2).
    root: PathBuf,
    #[arg(long, default_value_t = 1000)]
    repositories: usize,
    #[arg(long, default_value_t = 3)]
    tags: usize,
    /// Distinct images the tags draw from.
    #[arg(long, default_value_t = 64)]
    images: usize,
    #[arg(long, default_value_t = 2)]
    layers: usize,
    #[arg(long, default_value_t = 512)]
    layer_bytes: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long, default_value_t = 4)]
    threads: usize,
    /// Write the truth (one JSON line per tag, sorted) here.
    #[arg(long)]
    truth: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let spec = SynthSpec {
        repositories: args.repositories,
        tags_per_repository: args.tags,
        images: args.images,
        layer_bytes: args.layer_bytes,
        layers_per_image: args.layers,
        seed: args.seed,
    };
    let truth =
        generate(&args.root, &spec, args.threads).with_context(|| format!("writing {}", args.root.display()))?;
    if let Some(path) = &args.truth {
        let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
        for record in &truth {
            serde_json::to_writer(&mut out, record)?;
            out.write_all(b"\n")?;
        }
        out.flush()?;
    }
    eprintln!("wrote {} repositories, {} tags under {}", spec.repositories, truth.len(), args.root.display());
    Ok(())
}
