//! Where a recipient goes: an alias expansion, a local mailbox, or a remote
//! next hop. Pure decisions over the aliases and the password database; the
//! queue runner and `-bv` share them.
//!
//! Rules, in order, for a local name: `\name` goes straight to name's mailbox;
//! an alias applies (every entry of that name); for a top-level recipient
//! without an alias the `*` catch-all applies (dma: it catches real users too);
//! then a user of that name gets the mailbox; anything else bounces (5.1.1).
//! A name that appears again below itself in an expansion (`u: u, x`) is
//! delivered to u's mailbox, with a log line: never dropped, never looped.

use nix::unistd::User;

use crate::address::{self, Dest};
use crate::config::{AliasTarget, Aliases};

/// The deepest alias expansion we follow.
pub const MAX_DEPTH: usize = 20;

/// What to do with one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Append to this user's mailbox.
    Mailbox {
        /// The login name.
        user: String,
        /// The uid, for display.
        uid: u32,
    },
    /// Replace the recipient by these (queue addresses; `\u` = u's mailbox).
    Expand {
        /// The new recipients, in order.
        children: Vec<String>,
        /// Whether this came from the `*` catch-all.
        catch_all: bool,
        /// Loops found on the way, for the log.
        loops: Vec<String>,
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

/// The inputs of routing decisions.
pub struct Router<'a> {
    /// The aliases file, or why it could not be read.
    pub aliases: Result<&'a Aliases, String>,
    /// Domains that are this host.
    pub local_domains: &'a [String],
    /// NULLCLIENT: everything is remote.
    pub nullclient: bool,
    /// Looks a user up (getpwnam); a parameter so tests need no real users.
    pub lookup_user: &'a dyn Fn(&str) -> Option<u32>,
}

/// The real password database.
pub fn getpwnam_uid(name: &str) -> Option<u32> {
    User::from_name(name).ok().flatten().map(|u| u.uid.as_raw())
}

impl Router<'_> {
    /// Routes `addr`. `ancestors` are the local names it was expanded from,
    /// outermost first (empty for a top-level recipient).
    pub fn route(&self, addr: &str, ancestors: &[String]) -> Route {
        if let Some(name) = addr.strip_prefix('\\') {
            return self.mailbox(name);
        }
        if let Some(cmd) = addr.strip_prefix('|') {
            return Route::Fail(format!(
                "5.3.0 pipe destination `|{cmd}' is not supported yet (see the .forward issue)"
            ));
        }
        if addr.starts_with('/') || addr.starts_with(":include:") {
            return Route::Fail(format!(
                "5.3.0 file destination `{addr}' is not supported yet (see the .forward issue)"
            ));
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
                "5.4.6 alias expansion deeper than {MAX_DEPTH} levels at `{name}'"
            ));
        }
        let aliases = match &self.aliases {
            Ok(a) => *a,
            Err(e) => return Route::Defer(format!("4.3.5 aliases file: {e}")),
        };
        let mut targets = aliases.lookup(&name);
        let mut catch_all = false;
        if targets.is_empty() && ancestors.is_empty() {
            targets = aliases.lookup("*");
            catch_all = !targets.is_empty();
        }
        if targets.is_empty() {
            return self.mailbox(&name);
        }
        let mut chain: Vec<String> = ancestors.to_vec();
        chain.push(name.clone());
        let mut children = Vec::new();
        let mut loops = Vec::new();
        for t in targets {
            let child = match t {
                AliasTarget::Address(a) => match address::classify(a, self.local_domains) {
                    Dest::Local(n) if chain.contains(&n) => {
                        loops.push(format!("{} -> {n}", chain.join(" -> ")));
                        format!("\\{n}")
                    }
                    Dest::Local(n) => n,
                    Dest::Remote { addr, .. } => addr,
                },
                AliasTarget::Pipe(c) => format!("|{c}"),
                AliasTarget::File(f) => f.clone(),
                AliasTarget::Include(f) => format!(":include:{f}"),
            };
            if !children.contains(&child) {
                children.push(child);
            }
        }
        Route::Expand {
            children,
            catch_all,
            loops,
        }
    }

    fn mailbox(&self, name: &str) -> Route {
        if !crate::local::helper::valid_user_name(name) {
            return Route::Fail(format!("5.1.3 `{name}': invalid local user name"));
        }
        match (self.lookup_user)(name) {
            Some(uid) => Route::Mailbox {
                user: name.to_string(),
                uid,
            },
            None => Route::Fail(format!("5.1.1 {name}: unknown user")),
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
            _ => None,
        }
    }

    fn route(aliases: &str, addr: &str, ancestors: &[&str]) -> Route {
        let a = Aliases::parse(Path::new("aliases"), aliases).unwrap();
        let domains = vec!["host.example".to_string(), "localhost".to_string()];
        let r = Router {
            aliases: Ok(&a),
            local_domains: &domains,
            nullclient: false,
            lookup_user: &users,
        };
        let anc: Vec<String> = ancestors.iter().map(|s| s.to_string()).collect();
        r.route(addr, &anc)
    }

    fn children(r: Route) -> Vec<String> {
        match r {
            Route::Expand { children, .. } => children,
            other => panic!("not an expansion: {other:?}"),
        }
    }

    #[test]
    fn table() {
        let al = "postmaster: root\nteam: alice, bob@remote.org\nu: u, x\na: b\nb: a\n";
        assert_eq!(children(route(al, "postmaster", &[])), ["root"]);
        assert_eq!(
            children(route(al, "team@host.example", &[])),
            ["alice", "bob@remote.org"]
        );
        assert_eq!(
            route(al, "alice", &["team"]),
            Route::Mailbox {
                user: "alice".into(),
                uid: 1000
            }
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
        assert_eq!(
            route(al, "\\u", &["u"]),
            Route::Mailbox {
                user: "u".into(),
                uid: 1001
            }
        );
        // a: b, b: a ends at a's mailbox, which does not exist: a bounce, not silence.
        assert_eq!(children(route(al, "b", &["a"])), ["\\a"]);
        assert!(matches!(route(al, "\\a", &["a", "b"]), Route::Fail(s) if s.starts_with("5.1.1")));
    }

    #[test]
    fn catch_all_only_for_top_level() {
        let al = "*: alice\n";
        assert_eq!(children(route(al, "root", &[])), ["alice"]);
        assert_eq!(
            route(al, "root", &["x"]),
            Route::Mailbox {
                user: "root".into(),
                uid: 0
            }
        );
    }

    #[test]
    fn depth_is_bounded() {
        let deep: Vec<&str> = vec!["x"; MAX_DEPTH];
        assert!(matches!(route("", "alice", &deep), Route::Fail(s) if s.starts_with("5.4.6")));
    }
}
