//! What every mode needs once the configuration is read.

use std::path::PathBuf;

use crate::config::{Aliases, Config};
use crate::route::{Route, Router, getpwnam_uid};
use crate::spool::Spool;

/// The configuration and what is derived from it, for one run.
#[derive(Debug)]
pub struct Ctx {
    /// dma.conf.
    pub config: Config,
    /// `-C FILE` when given: handed on to `dma-local`.
    pub config_override: Option<PathBuf>,
    /// Our mail name: MAILNAME or the host name.
    pub hostname: String,
    /// Domains that mean "this host": the mail name, the system host name and
    /// `localhost`.
    pub local_domains: Vec<String>,
    /// The queue.
    pub spool: Spool,
    /// The `dma-local` program.
    pub helper: PathBuf,
    aliases: Option<Result<Aliases, String>>,
}

/// Where `dma-local` is installed, fixed at build time (`DMA_LIBEXEC_DIR`).
pub const LIBEXEC_DIR: &str = match option_env!("DMA_LIBEXEC_DIR") {
    Some(p) => p,
    None => "/usr/local/libexec/dma-rs",
};

impl Ctx {
    /// Builds the context for `config`.
    pub fn new(config: Config, config_override: Option<PathBuf>) -> Ctx {
        let hostname = config.hostname();
        let mut local_domains = vec![hostname.clone(), "localhost".to_string()];
        let system = crate::config::conf::system_hostname();
        if system != hostname {
            local_domains.push(system);
        }
        let spool = Spool::new(&config.spooldir);
        Ctx {
            config,
            config_override,
            hostname,
            local_domains,
            spool,
            helper: helper_path(),
            aliases: None,
        }
    }

    /// Routes `addr` (expanded from `ancestors`) with this run's aliases,
    /// local domains and the password database.
    pub fn route(&mut self, addr: &str, ancestors: &[String]) -> Route {
        let _ = self.aliases();
        let aliases = match self.aliases.as_ref().expect("loaded above") {
            Ok(a) => Ok(a),
            Err(e) => Err(e.clone()),
        };
        Router {
            aliases,
            local_domains: &self.local_domains,
            nullclient: self.config.nullclient,
            lookup_user: &getpwnam_uid,
        }
        .route(addr, ancestors)
    }

    /// The local part of `addr` when its domain is ours (the name aliases and
    /// mailboxes go by), else `addr` itself.
    pub fn local_name(&self, addr: &str) -> String {
        match crate::address::classify(addr, &self.local_domains) {
            crate::address::Dest::Local(n) => n,
            crate::address::Dest::Remote { addr, .. } => addr,
        }
    }

    /// The aliases file, read once per run; an error is `FILE:LINE: reason`.
    pub fn aliases(&mut self) -> Result<&Aliases, String> {
        if self.aliases.is_none() {
            self.aliases = Some(Aliases::load(&self.config.aliases).map_err(|e| e.to_string()));
        }
        match self.aliases.as_ref().expect("just set") {
            Ok(a) => Ok(a),
            Err(e) => Err(e.clone()),
        }
    }
}

/// The helper to run. A set-id `dma` only trusts the installed one; otherwise
/// one next to our own executable (a build tree) is preferred.
fn helper_path() -> PathBuf {
    let installed = PathBuf::from(LIBEXEC_DIR).join("dma-local");
    if crate::privsep::is_setid() {
        return installed;
    }
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("dma-local")))
        .filter(|p| p.exists())
        .unwrap_or(installed)
}
