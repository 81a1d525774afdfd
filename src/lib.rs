//! ankisyncd: a self-hosted Anki sync server. The binary (`main.rs`) is a thin shell over
//! this library; ARCHITECTURE.md maps the modules and the path of a request through them:
//! `http` → `protocol` → actors → `sync` → `store`.
//!
//! Besides `auth`, `cli`, `config` and `store`, three modules are public for one reason: the
//! micro-benchmarks (benches/micro.rs) call their hot paths in-process. Only those entry
//! points are `pub` in them (the envelope codec, the full-upload ingest and the download
//! build, the media upload check); everything else stays `pub(crate)`.

mod app;
pub mod auth;
pub mod cli;
mod clock;
pub mod config;
pub mod fullsync;
pub mod http;
pub mod media;
mod protocol;
pub mod store;
mod sync;
