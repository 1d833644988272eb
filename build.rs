//! Build metadata: the commit `--version` prints next to the crate version.
//!
//! `TOS_COMMIT` wins when set (a release build from a tarball has no `.git`); otherwise
//! `git rev-parse` in the source tree; otherwise `unknown`. Nothing else varies with the build
//! machine or time, so two builds of one commit stay byte-identical.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=TOS_COMMIT");
    // A new commit or checkout moves HEAD (or the ref it names); rebuild the string then.
    for p in [".git/HEAD", ".git/refs/heads", ".git/packed-refs"] {
        if std::path::Path::new(p).exists() {
            println!("cargo:rerun-if-changed={p}");
        }
    }
    let commit = std::env::var("TOS_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .or_else(|| {
            let out = Command::new("git")
                .args(["rev-parse", "--short=12", "HEAD"])
                .output()
                .ok()?;
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
                .filter(|c| !c.is_empty())
        })
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=TOS_COMMIT={commit}");
}
