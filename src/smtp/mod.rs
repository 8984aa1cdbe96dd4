//! Remote delivery: our SMTP client (a sans-I/O session over smtp-proto's
//! reply and EHLO parsers), its transport (TCP, rustls), SASL, a stub
//! DNS resolver for MX lookups, and MTA-STS policies.

pub mod auth;
pub mod body;
pub mod deadline;
pub mod dns;
pub mod downgrade;
pub mod mta_sts;
pub mod reply;
pub mod session;
pub mod stream;
pub mod tls;
