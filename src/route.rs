//! Where a recipient goes: an expansion (alias, `.forward`, `:include:`), a
//! local mailbox, a command or file, or a remote next hop. Pure decisions
//! over the aliases, the password database and what `.forward` files say
//! (read through callbacks); the queue runner and `-bv` share them.
//!
//! Rules, in order, for a local name: `\name` goes straight to name's
//! mailbox; an alias applies (every entry of that name); for a top-level
//! recipient without an alias the `*` catch-all applies (dma: it catches real
//! users too); a user with a `.forward` gets its entries; else the user's
//! mailbox; anything else bounces (5.1.1). A name that appears again below
//! itself (`u: u, x`, or a `.forward` listing its owner) goes to that
//! mailbox: never dropped, never looped. Commands and files only come from
//! the aliases file (run as ALIAS_USER) or a user's `.forward` (run as the
//! user); a recipient from the command line or a header can never be one.

use nix::unistd::User;

use crate::address::{self, Dest};
use crate::config::{AliasTarget, Aliases};
use crate::deliver::Outcome;
use crate::forward::Entry;
use crate::local::dotforward::ForwardFile;
use crate::spool::Origin;

/// The deepest expansion we follow.
pub const MAX_DEPTH: usize = 20;

/// A recipient an expansion produces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Child {
    /// Its queue address (`\u` = u's mailbox, `|cmd`, `/file`, `:include:/f`).
    pub addr: String,
    /// What produced it.
    pub origin: Option<Origin>,
}

/// What kind of expansion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expansion {
    /// An entry of the aliases file.
    Alias,
    /// The `*` catch-all.
    CatchAll,
    /// A user's `.forward`.
    Forward,
    /// An `:include:` file.
    Include,
}

/// A pipe or file destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Program {
    /// `|command`.
    Pipe(String),
    /// `/file`, or `/maildir/`.
    File(String),
}

/// What to do with one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Append to this user's mailbox.
    Mailbox {
        /// The login name.
        user: String,
        /// The uid, for display.
        uid: u32,
        /// Why a `.forward` was not used, if there was one (for the log).
        note: Option<String>,
        /// The `.forward` has not been read yet: `dma-local` reads it and
        /// delivers to the mailbox in one go unless it has entries, which
        /// then go to [`Router::expand_forward`].
        check_forward: bool,
    },
    /// Replace the recipient by these.
    Expand {
        /// The new recipients, in order.
        children: Vec<Child>,
        /// Where they come from.
        kind: Expansion,
        /// Loops and refused entries found on the way, for the log.
        notes: Vec<String>,
    },
    /// Run a command or write a file, with the authority of `origin`.
    Program {
        /// What.
        program: Program,
        /// Whose authority.
        origin: Origin,
    },
    /// Send to a remote address.
    Remote {
        /// The address.
        addr: String,
        /// Its domain.
        domain: String,
    },
    /// Bounce: `<enhanced status> <text>`.
    Fail(String),
    /// Try later: `<enhanced status> <text>`.
    Defer(String),
}

/// A file of entries read for us: a `.forward` or an `:include:`.
pub type ReadEntries<'a> = &'a dyn Fn(&str) -> Result<ForwardFile, Outcome>;

/// The inputs of routing decisions.
pub struct Router<'a> {
    /// The aliases file, or why it could not be read.
    pub aliases: Result<&'a Aliases, String>,
    /// Domains that are this host; the first is our mail name.
    pub local_domains: &'a [String],
    /// NULLCLIENT: everything is remote.
    pub nullclient: bool,
    /// ROOT_FORWARD_PROGRAMS.
    pub root_forward_programs: bool,
    /// Looks a user up (getpwnam); a parameter so tests need no real users.
    pub lookup_user: &'a dyn Fn(&str) -> Option<u32>,
    /// Reads a user's `.forward` (as that user).
    pub read_forward: ReadEntries<'a>,
    /// Reads an `:include:` file.
    pub read_include: ReadEntries<'a>,
    /// The `Delivered-To:` addresses the message already carries, lower case.
    pub delivered_to: &'a [String],
    /// Whether to leave the `.forward` of the user with this uid to the
    /// delivery, which routes the user to `Mailbox { check_forward }`: a
    /// delivery always does (one `dma-local` run instead of two when there
    /// is none); `-bv` does for the users whose `.forward` the caller may
    /// not see.
    pub lazy_forward: &'a dyn Fn(u32) -> bool,
}

/// The real password database.
pub fn getpwnam_uid(name: &str) -> Option<u32> {
    User::from_name(name).ok().flatten().map(|u| u.uid.as_raw())
}

impl Router<'_> {
    fn hostname(&self) -> &str {
        self.local_domains
            .first()
            .map(String::as_str)
            .unwrap_or("localhost")
    }

    /// Routes `addr`, which `origin` produced from `ancestors` (the local
    /// names it was expanded from, outermost first; empty at top level).
    pub fn route(&self, addr: &str, origin: Option<&Origin>, ancestors: &[String]) -> Route {
        let top = ancestors.is_empty();
        if let Some(name) = addr.strip_prefix('\\') {
            if top {
                return Route::Fail(format!("5.1.3 `{addr}' is not an address"));
            }
            return self.mailbox(name, None);
        }
        let special = addr.starts_with(['|', '/']) || addr.starts_with(":include:");
        if special {
            return match origin {
                None => Route::Fail(format!("5.1.3 `{addr}' is not an address")),
                Some(o) => self.special(addr, o, ancestors),
            };
        }
        let name = match address::classify(addr, self.local_domains) {
            _ if self.nullclient => {
                let domain = address::split(addr).1.unwrap_or("").to_string();
                return Route::Remote {
                    addr: addr.to_string(),
                    domain,
                };
            }
            Dest::Remote { addr, domain } => return Route::Remote { addr, domain },
            Dest::Local(name) => name,
        };
        if ancestors.len() >= MAX_DEPTH {
            return Route::Fail(format!(
                "5.4.6 expansion deeper than {MAX_DEPTH} levels at `{name}'"
            ));
        }
        let aliases = match &self.aliases {
            Ok(a) => *a,
            Err(e) => return Route::Defer(format!("4.3.5 aliases file: {e}")),
        };
        let mut targets = aliases.lookup(&name);
        let mut kind = Expansion::Alias;
        if targets.is_empty() && top {
            targets = aliases.lookup("*");
            kind = Expansion::CatchAll;
        }
        if targets.is_empty() {
            return self.user(&name, ancestors);
        }
        let mut chain: Vec<String> = ancestors.to_vec();
        chain.push(name.clone());
        let alias_origin = Origin::Alias(if kind == Expansion::CatchAll {
            "*".into()
        } else {
            name.clone()
        });
        let mut out = Expander::new(&chain);
        for t in targets {
            match t {
                AliasTarget::Address(a) => out.address(self, a, None),
                AliasTarget::Pipe(c) => out.push(format!("|{c}"), Some(alias_origin.clone())),
                AliasTarget::File(f) => out.push(f.clone(), Some(alias_origin.clone())),
                AliasTarget::Include(f) => {
                    out.push(format!(":include:{f}"), Some(alias_origin.clone()))
                }
            }
        }
        out.route(kind)
    }

    /// `|cmd`, `/file` and `:include:/file` made by `origin`.
    fn special(&self, addr: &str, origin: &Origin, ancestors: &[String]) -> Route {
        if let Some(cmd) = addr.strip_prefix('|') {
            return Route::Program {
                program: Program::Pipe(cmd.to_string()),
                origin: origin.clone(),
            };
        }
        if let Some(path) = addr.strip_prefix(":include:") {
            if !matches!(origin, Origin::Alias(_)) {
                return Route::Fail(format!(
                    "5.3.0 `{addr}': :include: only works in the aliases file"
                ));
            }
            if ancestors.len() >= MAX_DEPTH {
                return Route::Fail(format!(
                    "5.4.6 expansion deeper than {MAX_DEPTH} levels at `{addr}'"
                ));
            }
            let entries = match (self.read_include)(path) {
                Ok(ForwardFile::Entries(e)) => e,
                Ok(ForwardFile::Missing) => {
                    return Route::Defer(format!("4.3.0 {path}: missing or empty"));
                }
                Ok(ForwardFile::Ignored(why)) => return Route::Defer(format!("4.3.0 {why}")),
                Err(Outcome::Failed(why) | Outcome::Deferred(why)) => return Route::Defer(why),
                Err(Outcome::Delivered) => unreachable!("a read is not a delivery"),
            };
            let mut chain: Vec<String> = ancestors.to_vec();
            chain.push(addr.to_string());
            let mut out = Expander::new(&chain);
            for e in entries {
                match e {
                    Entry::Address(a) => out.address(self, &a, None),
                    Entry::Mailbox(u) => out.push(format!("\\{u}"), None),
                    // As in Postfix: an :include: file names addresses only.
                    other => out.notes.push(format!(
                        "{path}: {other:?} ignored: :include: files may only list addresses"
                    )),
                }
            }
            return out.route(Expansion::Include);
        }
        Route::Program {
            program: Program::File(addr.to_string()),
            origin: origin.clone(),
        }
    }

    /// A local name without an alias: its `.forward`, or its mailbox.
    fn user(&self, name: &str, ancestors: &[String]) -> Route {
        let uid = match self.check_user(name) {
            Ok(uid) => uid,
            Err(fail) => return fail,
        };
        if (self.lazy_forward)(uid) {
            return Route::Mailbox {
                user: name.to_string(),
                uid,
                note: None,
                check_forward: true,
            };
        }
        match (self.read_forward)(name) {
            Ok(ForwardFile::Missing) => self.mailbox(name, None),
            Ok(ForwardFile::Ignored(why)) => self.mailbox(name, Some(format!("ignoring {why}"))),
            Ok(ForwardFile::Entries(e)) => self.expand_forward(name, uid, e, ancestors),
            Err(Outcome::Failed(why) | Outcome::Deferred(why)) => Route::Defer(why),
            Err(Outcome::Delivered) => unreachable!("a read is not a delivery"),
        }
    }

    /// The recipients `name`'s `.forward` `entries` make (or a loop).
    pub fn expand_forward(
        &self,
        name: &str,
        uid: u32,
        entries: Vec<Entry>,
        ancestors: &[String],
    ) -> Route {
        let me = format!("{name}@{}", self.hostname()).to_ascii_lowercase();
        if self.delivered_to.contains(&me) {
            return Route::Fail(format!("5.4.6 mail forwarding loop for {me}"));
        }
        let mut chain: Vec<String> = ancestors.to_vec();
        chain.push(name.to_string());
        let origin = Origin::Forward(name.to_string());
        let mut out = Expander::new(&chain);
        for e in entries {
            match e {
                Entry::Address(a) => out.address(self, &a, Some(origin.clone())),
                Entry::Mailbox(u) => out.push(format!("\\{u}"), Some(origin.clone())),
                Entry::Pipe(_) | Entry::File(_) | Entry::Maildir(_)
                    if uid == 0 && !self.root_forward_programs =>
                {
                    out.notes.push(format!(
                        "root's .forward entry {e:?} refused (ROOT_FORWARD_PROGRAMS is off): delivering to root's mailbox"
                    ));
                    out.push(format!("\\{name}"), Some(origin.clone()));
                }
                Entry::Pipe(c) => out.push(format!("|{c}"), Some(origin.clone())),
                Entry::File(f) | Entry::Maildir(f) => out.push(f, Some(origin.clone())),
                Entry::Include(f) => out
                    .notes
                    .push(format!(":include:{f} ignored: not supported in .forward")),
            }
        }
        if out.children.is_empty() {
            return self.mailbox(name, Some("the .forward has no usable entry".into()));
        }
        out.route(Expansion::Forward)
    }

    fn check_user(&self, name: &str) -> Result<u32, Route> {
        if !crate::local::helper::valid_user_name(name) {
            return Err(Route::Fail(format!(
                "5.1.3 `{name}': invalid local user name"
            )));
        }
        (self.lookup_user)(name).ok_or_else(|| Route::Fail(format!("5.1.1 {name}: unknown user")))
    }

    fn mailbox(&self, name: &str, note: Option<String>) -> Route {
        match self.check_user(name) {
            Ok(uid) => Route::Mailbox {
                user: name.to_string(),
                uid,
                note,
                check_forward: false,
            },
            Err(fail) => fail,
        }
    }
}

/// Collects the children of one expansion: local names normalised, a name
/// already above in the chain turned into its mailbox, duplicates dropped.
struct Expander<'c> {
    chain: &'c [String],
    children: Vec<Child>,
    notes: Vec<String>,
}

impl<'c> Expander<'c> {
    fn new(chain: &'c [String]) -> Expander<'c> {
        Expander {
            chain,
            children: Vec::new(),
            notes: Vec::new(),
        }
    }

    fn address(&mut self, r: &Router, a: &str, origin: Option<Origin>) {
        let addr = match address::classify(a, r.local_domains) {
            Dest::Local(n) if self.chain.contains(&n) => {
                // The owner of a .forward listing themself is not a loop.
                if self.chain.last() != Some(&n) {
                    self.notes.push(format!(
                        "loop {} -> {n}: delivering to the mailbox of {n}",
                        self.chain.join(" -> ")
                    ));
                }
                format!("\\{n}")
            }
            Dest::Local(n) => n,
            Dest::Remote { addr, .. } => addr,
        };
        self.push(addr, origin);
    }

    fn push(&mut self, addr: String, origin: Option<Origin>) {
        if !self.children.iter().any(|c| c.addr == addr) {
            self.children.push(Child { addr, origin });
        }
    }

    fn route(self, kind: Expansion) -> Route {
        Route::Expand {
            children: self.children,
            kind,
            notes: self.notes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn users(name: &str) -> Option<u32> {
        match name {
            "root" => Some(0),
            "alice" => Some(1000),
            "u" => Some(1001),
            "fwd" => Some(1002),
            _ => None,
        }
    }

    fn forwards(name: &str) -> Result<ForwardFile, Outcome> {
        Ok(match name {
            "fwd" => ForwardFile::Entries(
                crate::forward::parse(
                    "\\fwd, |notify, fwd@host.example, /tmp/copy, alice, far@remote.org",
                )
                .unwrap(),
            ),
            "root" => {
                ForwardFile::Entries(crate::forward::parse("|evil, admin@remote.org").unwrap())
            }
            "alice" => {
                ForwardFile::Ignored("/home/alice/.forward is group- or world-writable".into())
            }
            _ => ForwardFile::Missing,
        })
    }

    fn includes(path: &str) -> Result<ForwardFile, Outcome> {
        match path {
            "/etc/list" => Ok(ForwardFile::Entries(
                crate::forward::parse("alice, |cmd, x@remote.org").unwrap(),
            )),
            _ => Err(Outcome::Deferred("4.3.0 nope".into())),
        }
    }

    fn route_with(
        aliases: &str,
        addr: &str,
        origin: Option<Origin>,
        ancestors: &[&str],
        delivered: &[&str],
    ) -> Route {
        let a = Aliases::parse(Path::new("aliases"), aliases).unwrap();
        let domains = vec!["host.example".to_string(), "localhost".to_string()];
        let delivered: Vec<String> = delivered.iter().map(|s| s.to_string()).collect();
        let r = Router {
            aliases: Ok(&a),
            local_domains: &domains,
            nullclient: false,
            root_forward_programs: false,
            lookup_user: &users,
            read_forward: &forwards,
            read_include: &includes,
            delivered_to: &delivered,
            lazy_forward: &|_| false,
        };
        let anc: Vec<String> = ancestors.iter().map(|s| s.to_string()).collect();
        r.route(addr, origin.as_ref(), &anc)
    }

    fn route(aliases: &str, addr: &str, ancestors: &[&str]) -> Route {
        route_with(aliases, addr, None, ancestors, &[])
    }

    fn children(r: Route) -> Vec<String> {
        match r {
            Route::Expand { children, .. } => children.into_iter().map(|c| c.addr).collect(),
            other => panic!("not an expansion: {other:?}"),
        }
    }

    fn mailbox(user: &str, uid: u32) -> Route {
        Route::Mailbox {
            user: user.into(),
            uid,
            note: None,
            check_forward: false,
        }
    }

    #[test]
    fn aliases_table() {
        let al = "postmaster: root\nteam: alice, bob@remote.org\nu: u, x\na: b\nb: a\n";
        assert_eq!(children(route(al, "postmaster", &[])), ["root"]);
        assert_eq!(
            children(route(al, "team@host.example", &[])),
            ["alice", "bob@remote.org"]
        );
        assert!(matches!(route(al, "nosuch", &[]), Route::Fail(s) if s.starts_with("5.1.1")));
        assert_eq!(
            route(al, "bob@remote.org", &["team"]),
            Route::Remote {
                addr: "bob@remote.org".into(),
                domain: "remote.org".into()
            }
        );
        // u: u, x keeps u (in its mailbox) and x.
        assert_eq!(children(route(al, "u", &[])), ["\\u", "x"]);
        assert_eq!(route(al, "\\u", &["u"]), mailbox("u", 1001));
        // a: b, b: a ends at a's mailbox, which does not exist: a bounce, not silence.
        assert_eq!(children(route(al, "b", &["a"])), ["\\a"]);
        assert!(matches!(route(al, "\\a", &["a", "b"]), Route::Fail(s) if s.starts_with("5.1.1")));
    }

    #[test]
    fn catch_all_only_for_top_level() {
        let al = "*: alice\n";
        assert_eq!(children(route(al, "root", &[])), ["alice"]);
        assert_eq!(route(al, "u", &["x"]), mailbox("u", 1001));
    }

    #[test]
    fn depth_is_bounded() {
        let deep: Vec<&str> = vec!["x"; MAX_DEPTH];
        assert!(matches!(route("", "alice", &deep), Route::Fail(s) if s.starts_with("5.4.6")));
    }

    #[test]
    fn forward_entries_and_origins() {
        let r = route("", "fwd", &[]);
        let Route::Expand { children, kind, .. } = r else {
            panic!("{r:?}")
        };
        assert_eq!(kind, Expansion::Forward);
        let addrs: Vec<&str> = children.iter().map(|c| c.addr.as_str()).collect();
        // Listing oneself (twice, in two forms) is one mailbox copy.
        assert_eq!(
            addrs,
            ["\\fwd", "|notify", "/tmp/copy", "alice", "far@remote.org"]
        );
        assert!(
            children
                .iter()
                .all(|c| c.origin == Some(Origin::Forward("fwd".into())))
        );
        let origin = Some(Origin::Forward("fwd".into()));
        assert_eq!(
            route_with("", "|notify", origin.clone(), &["fwd"], &[]),
            Route::Program {
                program: Program::Pipe("notify".into()),
                origin: Origin::Forward("fwd".into())
            }
        );
        // An unsafe .forward means the mailbox, with a note for the log.
        assert!(
            matches!(route("", "alice", &[]), Route::Mailbox { note: Some(n), .. } if n.contains("writable"))
        );
        // A message that was already delivered through this .forward: loop.
        assert!(
            matches!(route_with("", "fwd", None, &[], &["fwd@host.example"]), Route::Fail(s) if s.starts_with("5.4.6"))
        );
    }

    #[test]
    fn commands_never_from_the_outside() {
        for addr in ["|/bin/sh", "/etc/passwd", ":include:/etc/list", "\\root"] {
            assert!(
                matches!(route("", addr, &[]), Route::Fail(s) if s.starts_with("5.1.3")),
                "{addr}"
            );
        }
        // :include: only from aliases, and only addresses from it.
        let r = route_with(
            "",
            ":include:/etc/list",
            Some(Origin::Alias("list".into())),
            &["list"],
            &[],
        );
        assert_eq!(children(r), ["alice", "x@remote.org"]);
        let r = route_with(
            "",
            ":include:/etc/list",
            Some(Origin::Forward("fwd".into())),
            &["fwd"],
            &[],
        );
        assert!(matches!(r, Route::Fail(_)));
        let r = route_with(
            "",
            ":include:/other",
            Some(Origin::Alias("l".into())),
            &["l"],
            &[],
        );
        assert!(matches!(r, Route::Defer(_)));
    }

    #[test]
    fn root_forward_programs_go_to_roots_mailbox() {
        let r = route("", "root", &[]);
        let Route::Expand {
            children, notes, ..
        } = r
        else {
            panic!("{r:?}")
        };
        let addrs: Vec<&str> = children.iter().map(|c| c.addr.as_str()).collect();
        assert_eq!(addrs, ["\\root", "admin@remote.org"]);
        assert!(notes[0].contains("ROOT_FORWARD_PROGRAMS"));
    }

    #[test]
    fn alias_programs_carry_the_alias_origin() {
        let r = route(
            "pager: \"|/usr/bin/page\", /var/log/copy, :include:/etc/list\n",
            "pager",
            &[],
        );
        let Route::Expand { children, .. } = r else {
            panic!()
        };
        assert!(
            children
                .iter()
                .all(|c| c.origin == Some(Origin::Alias("pager".into())))
        );
    }
}
