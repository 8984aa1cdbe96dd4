//! What every mode needs once the configuration is read.

use std::path::PathBuf;

use crate::config::conf::ConfError;
use crate::config::{Aliases, Config, Stamp};
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
    /// The aliases file's stamp when `aliases` was read.
    aliases_stamp: Stamp,
    /// A runner's record of the files it read: see [`Ctx::refresh`].
    watched: Option<Watched>,
    /// Processes removing finished messages for this run (see
    /// [`crate::deliver::run_many`]), to be waited for before the spool
    /// directory is synced.
    pub removers: Vec<nix::unistd::Pid>,
    /// The users found so far (name, uid): a queue run routes many
    /// messages to the same few users. Only found ones: a user created
    /// meanwhile is looked up again, never bounced as unknown.
    users: std::cell::RefCell<std::collections::HashMap<String, u32>>,
}

/// The stamps of `dma.conf` and `auth.conf` as a runner last read them.
#[derive(Debug, Clone, Copy)]
struct Watched {
    conf: Stamp,
    auth: Stamp,
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
            aliases_stamp: Stamp::default(),
            watched: None,
            removers: Vec::new(),
            users: Default::default(),
        }
    }

    /// Waits for this run's [`Ctx::removers`] (all, or all but `keep`).
    pub fn wait_removers(&mut self, keep: usize) {
        while self.removers.len() > keep {
            let pid = self.removers.remove(0);
            while let Err(nix::Error::EINTR) = nix::sys::wait::waitpid(pid, None) {}
        }
    }

    /// The uid of user `name` (getpwnam), remembered once found.
    fn user_uid(&self, name: &str) -> Option<u32> {
        if let Some(&uid) = self.users.borrow().get(name) {
            return Some(uid);
        }
        let uid = getpwnam_uid(name)?;
        self.users.borrow_mut().insert(name.to_string(), uid);
        Some(uid)
    }

    /// Makes this the context of a process that lives on after reading its
    /// files (a runner): [`Ctx::refresh`] then reads again what changed.
    /// `conf` is the stamp of `dma.conf` taken before it was read.
    pub fn watch(&mut self, conf: Stamp) {
        let auth = self.auth_stamp();
        self.watched = Some(Watched { conf, auth });
    }

    fn auth_stamp(&self) -> Stamp {
        self.config
            .authpath
            .as_deref()
            .map(Stamp::of)
            .unwrap_or_default()
    }

    /// For a runner ([`Ctx::watch`]), before a message: reads `dma.conf`
    /// again if it changed since it was read (and with it everything derived
    /// from it), and the aliases file (or forgets it until it is needed).
    /// When `dma.conf` or `auth.conf` changed, the kept SMTP connections are
    /// closed: they were opened, secured and authenticated under the old
    /// settings. (`auth.conf` itself is read at every new connection, and
    /// `:include:` files and `.forward` files at every expansion: nothing
    /// to keep fresh there.) A `dma.conf` that no longer parses is an
    /// error, and nothing is changed: the caller must not deliver with the
    /// old one.
    ///
    /// SPOOLDIR stays the one this runner was started for (its runner locks
    /// are there, and so is the mail it was asked to deliver); new mail in a
    /// new SPOOLDIR gets runners of its own.
    pub fn refresh(&mut self) -> Result<(), ConfError> {
        let Some(mut seen) = self.watched else {
            return Ok(());
        };
        let mut drop_sessions = false;
        let conf = Stamp::of(&self.config.path);
        if conf != seen.conf {
            let config = Config::load(&self.config.path)?;
            crate::info!(
                "{} changed: read again, before the next message",
                self.config.path.display()
            );
            if config.spooldir != self.config.spooldir {
                crate::notice!(
                    "SPOOLDIR is now {}: this runner still delivers from {}",
                    config.spooldir.display(),
                    self.config.spooldir.display()
                );
            }
            let mut new = Ctx::new(config, self.config_override.take());
            std::mem::swap(&mut new.spool, &mut self.spool);
            new.forwards_visible_to = self.forwards_visible_to;
            new.pool = self.pool.take();
            new.helper_session = std::mem::take(&mut self.helper_session);
            *self = new;
            seen.conf = conf;
            drop_sessions = true;
        }
        let auth = self.auth_stamp();
        if auth != seen.auth {
            seen.auth = auth;
            drop_sessions = true;
        }
        self.watched = Some(seen);
        if drop_sessions && let Some(p) = &self.pool {
            p.close();
        }
        if self.aliases.is_some() && Stamp::of(&self.config.aliases) != self.aliases_stamp {
            self.aliases = None;
        }
        Ok(())
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
        // -bv by anyone but root: another user's .forward is theirs.
        let hidden =
            |uid: u32| matches!(this.forwards_visible_to, Some(me) if me != 0 && uid != me);
        let read_forward = |user: &str| {
            // The router leaves a hidden one to the delivery (see
            // `lazy_forward` below); this only makes sure it is never read.
            if this.forwards_visible_to.is_some() && this.user_uid(user).is_none_or(hidden) {
                return Ok(ForwardFile::Ignored(
                    "the .forward of another user (not shown)".into(),
                ));
            }
            crate::local::read_forward(this, user)
        };
        let read_include = |path: &str| crate::local::read_include(this, path);
        f(&Router {
            aliases,
            local_domains: &this.local_domains,
            nullclient: this.config.nullclient,
            root_forward_programs: this.config.root_forward_programs,
            lookup_user: &|name| this.user_uid(name),
            read_forward: &read_forward,
            read_include: &read_include,
            delivered_to,
            lazy_forward: &|uid| this.forwards_visible_to.is_none() || hidden(uid),
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

    /// The aliases file, read once per run (a runner reads it again when it
    /// changed: [`Ctx::refresh`]); an error is `FILE:LINE: reason`.
    pub fn aliases(&mut self) -> Result<&Aliases, String> {
        if self.aliases.is_none() {
            self.aliases_stamp = Stamp::of(&self.config.aliases);
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
/// The `dma-local` this program runs: the installed one when set-id, else
/// the one next to our executable if there is one.
pub fn helper_path() -> PathBuf {
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
