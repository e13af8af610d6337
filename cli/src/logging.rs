//! tracing set-up: `--log-level` sets the default, `RUST_LOG` overrides it,
//! and fuser's `log` records are bridged in.

use std::fs::OpenOptions;
use std::path::Path;
use std::sync::Mutex;

use anyhow::{Context, Result};
use tracing_subscriber::EnvFilter;

const LEVELS: [&str; 6] = ["error", "warn", "info", "debug", "trace", "off"];

/// Checks `--log-level` for every command, not only those that log.
pub(crate) fn check_level(level: &str) -> Result<(), String> {
    if LEVELS.contains(&level) {
        Ok(())
    } else {
        Err(format!(
            "--log-level {level}: expected error, warn, info, debug, trace or off"
        ))
    }
}

pub(crate) fn init(level: &str, file: Option<&Path>) -> Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.is_empty() => {
            EnvFilter::try_new(&v).with_context(|| format!("RUST_LOG={v} is not a valid filter"))?
        }
        // fuser warns when it unmounts a file system that is already gone
        // (after `tmpfsd unmount`), which is the normal way out.
        _ => EnvFilter::try_new(format!("{level},fuser=error"))
            .ok()
            .filter(|_| LEVELS.contains(&level))
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
    result.map_err(|e| anyhow::anyhow!("cannot set up logging: {e}"))?;
    // A panic is logged as one line, like every other error; the request
    // that caused it is answered EIO by the adapter.
    std::panic::set_hook(Box::new(|info| {
        let payload = info.payload();
        let msg = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("unknown panic");
        match info.location() {
            Some(at) => tracing::error!("panic at {at}: {msg}"),
            None => tracing::error!("panic: {msg}"),
        }
    }));
    Ok(())
}
