//! dma-rs: a small, non-listening mail transfer agent, the drop-in successor
//! of dma (the DragonFly Mail Agent).
//!
//! # Layout
//! The modules follow a message through the program:
//! [`cli`] (argv) → [`intake`] (stdin, header fixes) → [`spool`] (the durable
//! queue) → [`deliver`] (per-recipient work, using [`route`]) → [`local`]
//! (mailboxes, through the privileged `dma-local`) or [`remote`] (SMTP,
//! signed by [`dkim`] when configured), with [`bounce`] for what failed. [`config`] reads dma.conf,
//! auth.conf and aliases; [`privsep`] holds the only `unsafe` code.

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod address;
pub mod app;
pub mod bounce;
pub mod check;
pub mod cli;
pub mod clock;
pub mod config;
pub mod context;
pub mod deliver;
pub mod dkim;
pub mod escape;
pub mod exit;
pub mod forward;
pub mod intake;
pub mod local;
pub mod logging;
pub mod mailq;
pub mod privsep;
pub mod probe;
pub mod qadmin;
pub mod remote;
pub mod route;
pub mod runner;
pub mod smtp;
pub mod smtp_stdin;
pub mod spool;

use std::sync::OnceLock;

static PROGNAME: OnceLock<String> = OnceLock::new();

/// The name we were called by (`sendmail`, `mailq`, `dma`...), for messages.
pub fn progname() -> &'static str {
    PROGNAME.get().map(String::as_str).unwrap_or("dma")
}

/// Records the name we were called by; the first call wins.
pub fn set_progname(name: &str) {
    let _ = PROGNAME.set(name.to_string());
}
