//! ankisyncd: a self-hosted Anki sync server. The binary (`main.rs`) is a thin shell over
//! this library; ARCHITECTURE.md maps the modules and the path of a request through them:
//! `http` → `protocol` → actors → `sync` → `store`.

mod admin;
mod app;
pub mod auth;
mod backup_schedule;
pub mod cli;
mod clock;
mod compat;
pub mod config;
mod fullsync;
pub mod healthcheck;
mod http;
mod maintenance;
mod media;
mod metrics;
mod migrate;
mod protocol;
pub mod quota;
pub mod store;
mod sync;
pub mod tls;
