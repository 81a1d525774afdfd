//! A response body that counts the bytes it sends and says when it was sent completely: a
//! full download is a completed sync only once its last byte went out, not when its stream
//! started.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use prometheus_client::metrics::counter::Counter;

use super::envelope::ResponseBody;

pub(super) struct Metered {
    inner: ResponseBody,
    sent: Counter,
    /// Called once, after the last frame.
    on_end: Option<Box<dyn FnOnce() + Send>>,
}

impl Metered {
    fn ended(&mut self) {
        if let Some(on_end) = self.on_end.take() {
            on_end();
        }
    }

    pub(super) fn new(
        inner: ResponseBody,
        sent: Counter,
        on_end: Option<Box<dyn FnOnce() + Send>>,
    ) -> Metered {
        Metered {
            inner,
            sent,
            on_end,
        }
    }
}

impl Body for Metered {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.sent.inc_by(data.len() as u64);
                }
                // hyper stops polling a body that says it has ended.
                if self.inner.is_end_stream() {
                    self.ended();
                }
            }
            Poll::Ready(None) => self.ended(),
            Poll::Ready(Some(Err(_))) | Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Metered {
    fn drop(&mut self) {
        // An empty body is complete without ever being polled; a cut stream is not.
        if self.inner.is_end_stream() {
            self.ended();
        }
    }
}
