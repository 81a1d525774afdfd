//! HTTP: accepting connections and shutting down (`server`), finding the handler for a path
//! (`router`), the two request envelopes (`envelope`), calling the layers below
//! (`dispatch`, with the collection-sync methods in `collection` and the media methods in
//! `msync`), the plain pages (`pages`), byte counting of responses for the metrics
//! (`metered`), and the one mapping from errors to status codes (`error`). Nothing here
//! knows what a collection is.

mod collection;
mod dispatch;
pub mod envelope;
mod error;
mod metered;
mod msync;
mod pages;
mod router;
mod server;

pub(crate) use envelope::Limits;
pub(crate) use server::serve;
