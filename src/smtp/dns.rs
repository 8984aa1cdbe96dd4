//! A stub DNS resolver for MX lookups (in progress).
