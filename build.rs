//! Records the git commit the binaries are built from, for `--version`.
//!
//! `DMA_GIT_COMMIT` set by whoever builds (a package built from a tarball
//! knows its commit; git does not) wins; otherwise `git rev-parse --short
//! HEAD` when the source is a git checkout. Without either, or when git
//! fails (not installed, a checkout owned by another user), the version is
//! printed without a commit: nothing here may fail a build. The program
//! reads it as `DMA_BUILD_COMMIT`, set only here, after the check below.

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=DMA_GIT_COMMIT");
    let given = std::env::var("DMA_GIT_COMMIT")
        .ok()
        .filter(|c| !c.is_empty());
    let commit = given.or_else(|| {
        if !Path::new(".git").exists() {
            return None;
        }
        watch_git();
        git(&["rev-parse", "--short", "HEAD"])
    });
    match commit {
        Some(c) if plain(&c) => println!("cargo:rustc-env=DMA_BUILD_COMMIT={c}"),
        Some(c) => println!("cargo:warning=commit id `{c}' ignored: not a plain commit id"),
        None => {}
    }
}

/// A commit id as `--version` may print it: short, no blanks or controls.
fn plain(c: &str) -> bool {
    !c.is_empty()
        && c.len() <= 64
        && c.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._+-".contains(&b))
}

/// The first line of git's output, if it succeeded.
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    Some(text.lines().next()?.trim().to_string())
}

/// Builds again when HEAD moves: `HEAD` changes on a checkout, the reflog
/// `logs/HEAD` on every commit (the branch's ref file may be packed).
/// Only files that exist: cargo reruns for a missing one on every build.
fn watch_git() {
    let Some(dir) = git(&["rev-parse", "--git-dir"]) else {
        return;
    };
    for f in ["HEAD", "logs/HEAD"] {
        let p = Path::new(&dir).join(f);
        if p.exists() {
            println!("cargo:rerun-if-changed={}", p.display());
        }
    }
}
