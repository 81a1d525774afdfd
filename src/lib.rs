//! ankisyncd: a self-hosted Anki sync server. The binary (`main.rs`) is a thin shell over
//! this library; ARCHITECTURE.md maps the modules and the path of a request through them:
//! `http` → `protocol` → actors → `sync` → `store`.

mod app;
pub mod auth;
pub mod cli;
mod clock;
mod compat;
pub mod config;
mod fullsync;
pub mod healthcheck;
mod http;
mod media;
mod metrics;
mod protocol;
pub mod store;
mod sync;
pub mod tls;
