//! The three files dma reads, parsed as dma parses them: `dma.conf`,
//! `auth.conf` and the aliases file. Every parser is pure (text in, value or
//! `FILE:LINE` error out) so it can be tested and fuzzed without I/O.

pub mod aliases;
pub mod auth;
pub mod conf;
pub mod duration;
pub mod size;
pub mod stamp;

pub use aliases::{AliasTarget, Aliases};
pub use auth::AuthFile;
pub use conf::Config;
pub use stamp::Stamp;
