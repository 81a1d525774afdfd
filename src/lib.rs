//! ankisyncd: a self-hosted Anki sync server. The binary (`main.rs`) is a thin shell over
//! this library; ARCHITECTURE.md maps the modules and the path of a request through them.

pub mod config;
pub mod store;
pub mod auth;
