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
    /// Bytes passed on, and how many the body announced (its Content-Length), if it did:
    /// hyper stops polling a body once that many went out, without asking for its end.
    passed: u64,
    announced: Option<u64>,
    /// Called once, after the last frame.
    on_end: Option<Box<dyn FnOnce() + Send>>,
}

impl Metered {
    fn complete(&self) -> bool {
        self.inner.is_end_stream() || self.announced.is_some_and(|n| self.passed >= n)
    }

    fn ended(&mut self) {
        if let Some(on_end) = self.on_end.take() {
            on_end();
        }
    }

    /// `content_length` is the response's header, if set; else the body's own size counts.
    pub(super) fn new(
        inner: ResponseBody,
        content_length: Option<u64>,
        sent: Counter,
        on_end: Option<Box<dyn FnOnce() + Send>>,
    ) -> Metered {
        let announced = content_length.or(inner.size_hint().exact());
        Metered {
            inner,
            sent,
            passed: 0,
            announced,
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
                    let len = data.len() as u64;
                    self.sent.inc_by(len);
                    self.passed += len;
                }
                if self.complete() {
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
        if self.complete() {
            self.ended();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use http_body_util::{BodyExt, Full, StreamBody};

    use super::*;

    fn metered(
        body: ResponseBody,
        content_length: Option<u64>,
    ) -> (Metered, Counter, Arc<AtomicBool>) {
        let (sent, ended) = (Counter::default(), Arc::new(AtomicBool::new(false)));
        let flag = ended.clone();
        let on_end = Box::new(move || flag.store(true, Ordering::SeqCst));
        (
            Metered::new(body, content_length, sent.clone(), Some(on_end)),
            sent,
            ended,
        )
    }

    fn chunks(parts: &[&'static [u8]]) -> ResponseBody {
        let frames = parts.iter().map(|p| Ok(Frame::data(Bytes::from_static(p))));
        StreamBody::new(futures_util::stream::iter(frames.collect::<Vec<_>>())).boxed_unsync()
    }

    #[tokio::test]
    async fn a_body_sent_to_its_end_completes() {
        let full = Full::new(Bytes::from_static(b"hello"))
            .map_err(|n| match n {})
            .boxed_unsync();
        let (body, sent, ended) = metered(full, None);
        assert_eq!(body.collect().await.unwrap().to_bytes().len(), 5);
        assert_eq!((sent.get(), ended.load(Ordering::SeqCst)), (5, true));

        let (mut body, sent, ended) = metered(chunks(&[b"abc", b"de"]), Some(5));
        // hyper stops after Content-Length bytes, without polling for the end.
        for _ in 0..2 {
            body.frame().await.unwrap().unwrap();
        }
        drop(body);
        assert_eq!((sent.get(), ended.load(Ordering::SeqCst)), (5, true));
    }

    #[tokio::test]
    async fn a_cut_body_does_not() {
        let (mut body, sent, ended) = metered(chunks(&[b"abc", b"de"]), Some(5));
        body.frame().await.unwrap().unwrap();
        drop(body);
        assert_eq!((sent.get(), ended.load(Ordering::SeqCst)), (3, false));
        let (mut body, _, ended) = metered(chunks(&[b"abc", b"de"]), None);
        body.frame().await.unwrap().unwrap();
        drop(body);
        assert!(!ended.load(Ordering::SeqCst));
    }
}
