//! `tmpfsd env DIR [--shell sh|fish|powershell]`.

use std::path::Path;

use tmpfsd::sys;

use crate::args::Shell;
use crate::CliError;

/// The variables runtimes read for their temporary directory.
const VARS: [&str; 3] = ["TMPDIR", "TMP", "TEMP"];

pub(crate) fn run(dir: &Path, shell: Shell) -> Result<(), CliError> {
    let abs = super::absolute(dir);
    // A warning, not an error: pointing at a plain directory is allowed.
    match sys::mount_at(&abs) {
        Ok(Some(m)) if m.is_tmpfsd() => {}
        _ if !abs.is_dir() => eprintln!("tmpfsd: warning: {} does not exist", abs.display()),
        _ => eprintln!("tmpfsd: warning: {} is not a tmpfsd mount", abs.display()),
    }
    let path = abs.to_string_lossy();
    for var in VARS {
        println!("{}", line(shell, var, &path));
    }
    Ok(())
}

fn line(shell: Shell, var: &str, value: &str) -> String {
    match shell {
        // Single quotes take everything literally but a single quote.
        Shell::Sh => format!("export {var}='{}'", value.replace('\'', r"'\''")),
        Shell::Fish => format!("set -gx {var} '{}'", value.replace('\\', r"\\").replace('\'', r"\'")),
        Shell::Powershell => format!("$env:{var} = '{}'", value.replace('\'', "''")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_awkward_paths() {
        assert_eq!(line(Shell::Sh, "TMPDIR", "/a b/c'd"), r"export TMPDIR='/a b/c'\''d'");
        assert_eq!(line(Shell::Fish, "TMP", r"/x\y'z"), r"set -gx TMP '/x\\y\'z'");
        assert_eq!(line(Shell::Powershell, "TEMP", "C:/it's"), "$env:TEMP = 'C:/it''s'");
    }
}
