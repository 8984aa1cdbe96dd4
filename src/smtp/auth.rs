//! SASL mechanisms for the SMTP client (in progress).
