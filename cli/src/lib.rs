//! `ferry`: the daemon (`ferry serve`) and the bitsadmin-style command line
//! that talks to it through the HTTP API.
//!
//! - `config.rs`: the daemon's settings (defaults, TOML, environment, flags).
//! - `serve.rs`: the daemon: engine, API on the Unix socket and optional
//!   TCP, peer-credential and token authentication, signals.
//! - `identity.rs`: principals → Unix identities for a system daemon.
//! - `client.rs`: awc over the Unix socket or TCP, typed answers.
//! - `commands.rs`: the CLI's commands, output and exit codes.

pub mod client;
pub mod commands;
pub mod config;
pub mod identity;
pub mod serve;
