//! Exit codes from sysexits.h and the one error type `main` turns into them.
//!
//! Every module returns its own error enum; at the edge each is converted into
//! a [`Fatal`], which carries the sysexits code dma uses for that case and the
//! one-line message printed as `progname: message`.

use std::fmt;

/// Successful termination.
pub const EX_OK: i32 = 0;
/// Command line usage error.
pub const EX_USAGE: i32 = 64;
/// Data format error (bad message, bad address).
pub const EX_DATAERR: i32 = 65;
/// Cannot open input; dma also uses it for "no recipients".
pub const EX_NOINPUT: i32 = 66;
/// Addressee unknown.
pub const EX_NOUSER: i32 = 67;
/// Service unavailable.
pub const EX_UNAVAILABLE: i32 = 69;
/// Internal software error; dma uses it for aliases parse errors.
pub const EX_SOFTWARE: i32 = 70;
/// System error (fork, privileges).
pub const EX_OSERR: i32 = 71;
/// Can't create (user) output file: the spool.
pub const EX_CANTCREAT: i32 = 73;
/// Input/output error.
pub const EX_IOERR: i32 = 74;
/// Temporary failure; the user is invited to retry.
pub const EX_TEMPFAIL: i32 = 75;
/// Permission denied.
pub const EX_NOPERM: i32 = 77;
/// Configuration error.
pub const EX_CONFIG: i32 = 78;

/// An error that ends the program: a sysexits code and a one-line message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fatal {
    /// The sysexits code the process exits with.
    pub code: i32,
    /// The message, without the program name and without a newline.
    pub msg: String,
}

impl Fatal {
    /// A fatal error with the given exit code.
    pub fn new(code: i32, msg: impl Into<String>) -> Fatal {
        Fatal {
            code,
            msg: msg.into(),
        }
    }
}

impl fmt::Display for Fatal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for Fatal {}
