//! tracing set-up: `--log-level` sets the default, `RUST_LOG` overrides it,
//! and fuser's `log` records are bridged in.

use std::fs::OpenOptions;
use std::path::Path;
use std::sync::Mutex;

use anyhow::{Context, Result};
use tracing_subscriber::EnvFilter;

pub(crate) fn init(level: &str, file: Option<&Path>) -> Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.is_empty() => {
            EnvFilter::try_new(&v).with_context(|| format!("RUST_LOG={v} is not a valid filter"))?
        }
        _ => EnvFilter::try_new(level)
            .ok()
            .filter(|_| ["error", "warn", "info", "debug", "trace", "off"].contains(&level))
            .with_context(|| format!("--log-level {level}: expected error, warn, info, debug, trace or off"))?,
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(false);
    let result = match file {
        Some(path) => {
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("cannot open log file {}", path.display()))?;
            builder.with_ansi(false).with_writer(Mutex::new(f)).try_init()
        }
        None => builder.with_writer(std::io::stderr).try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("cannot set up logging: {e}"))
}
