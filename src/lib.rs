//! ankisyncd: a self-hosted Anki sync server. The binary (`main.rs`) is a thin shell over
//! this library; ARCHITECTURE.md maps the modules and the path of a request through them:
//! `http` → `protocol` → actors → `sync` → `store`.
//!
//! Besides `auth`, `cli`, `config` and `store`, three modules are public for one reason: the
//! micro-benchmarks (benches/micro.rs) call their hot paths in-process. Only those entry
//! points are `pub` in them (the envelope codec, the full-upload ingest and the download
//! build, the media upload check); everything else stays `pub(crate)`.

mod admin;
mod app;
pub mod auth;
mod backup_schedule;
mod bulk;
pub mod cli;
mod clock;
mod compat;
pub mod config;
pub mod fullsync;
pub mod healthcheck;
pub mod http;
mod maintenance;
pub mod media;
mod metrics;
mod migrate;
mod protocol;
pub mod quota;
pub mod store;
mod sync;
pub mod tls;
