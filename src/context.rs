//! What every mode needs once the configuration is read.

use std::path::PathBuf;

use crate::config::{Aliases, Config};
use crate::local::dotforward::ForwardFile;
use crate::route::{Route, Router, getpwnam_uid};
use crate::spool::Origin;
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
    /// For `-bv`: show only the `.forward` of this uid (all for root);
    /// `None` (delivery) reads every one.
    pub forwards_visible_to: Option<u32>,
    /// SMTP connections kept open across the messages of a queue run.
    pub pool: Option<crate::remote::Pool>,
    /// The `dma-local session` of a runner or queue worker.
    pub helper_session: std::cell::RefCell<crate::local::session::Use>,
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
            forwards_visible_to: None,
            pool: None,
            helper_session: Default::default(),
            aliases: None,
        }
    }

    /// Routes `addr`, made by `origin` from `ancestors`, with this run's
    /// aliases, local domains, the password database and `.forward` files
    /// (read through `dma-local`). `delivered_to` are the message's
    /// `Delivered-To:` addresses, lower case.
    pub fn route(
        &mut self,
        addr: &str,
        origin: Option<&Origin>,
        ancestors: &[String],
        delivered_to: &[String],
    ) -> Route {
        self.with_router(delivered_to, |r| r.route(addr, origin, ancestors))
    }

    /// What `user`'s `.forward` entries (as `dma-local` found them during a
    /// delivery) make of a recipient.
    pub fn expand_forward(
        &mut self,
        user: &str,
        uid: u32,
        entries: Vec<crate::forward::Entry>,
        ancestors: &[String],
        delivered_to: &[String],
    ) -> Route {
        self.with_router(delivered_to, |r| {
            r.expand_forward(user, uid, entries, ancestors)
        })
    }

    /// Runs `f` with the router of this run.
    fn with_router<R>(&mut self, delivered_to: &[String], f: impl FnOnce(&Router) -> R) -> R {
        let _ = self.aliases();
        let aliases = match self.aliases.as_ref().expect("loaded above") {
            Ok(a) => Ok(a),
            Err(e) => Err(e.clone()),
        };
        let this: &Ctx = self;
        let read_forward = |user: &str| {
            if let Some(me) = this.forwards_visible_to {
                let theirs = getpwnam_uid(user);
                if me != 0 && theirs != Some(me) {
                    return Ok(ForwardFile::Ignored(
                        "the .forward of another user, if any (not shown)".into(),
                    ));
                }
            }
            crate::local::read_forward(this, user)
        };
        let read_include = |path: &str| crate::local::read_include(this, path);
        f(&Router {
            aliases,
            local_domains: &this.local_domains,
            nullclient: this.config.nullclient,
            root_forward_programs: this.config.root_forward_programs,
            lookup_user: &getpwnam_uid,
            read_forward: &read_forward,
            read_include: &read_include,
            delivered_to,
            lazy_forward: this.forwards_visible_to.is_none(),
        })
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
