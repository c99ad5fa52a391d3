//! The response stream of one watch.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Stream;
use roster_proto::directory::WatchChangesFrame;
use tokio::sync::{mpsc, oneshot};

use crate::error::{ServiceError, ServiceResult};

/// The response stream of one watch: buffered messages, or — as soon as the
/// watcher gives up (slow consumer, expired cursor, shutdown) — its error.
pub struct WatchStream {
    messages: mpsc::Receiver<WatchChangesFrame>,
    abort: Option<oneshot::Receiver<ServiceError>>,
    done: bool,
}

impl WatchStream {
    pub(super) fn new(
        messages: mpsc::Receiver<WatchChangesFrame>,
        abort: oneshot::Receiver<ServiceError>,
    ) -> Self {
        Self {
            messages,
            abort: Some(abort),
            done: false,
        }
    }
}

impl Stream for WatchStream {
    type Item = ServiceResult<WatchChangesFrame>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        if let Some(abort) = self.abort.as_mut() {
            match Pin::new(abort).poll(cx) {
                Poll::Ready(Ok(error)) => {
                    // The error goes first: buffered messages would only
                    // delay telling a slow consumer to resume elsewhere.
                    self.done = true;
                    self.messages.close();
                    return Poll::Ready(Some(Err(error)));
                }
                Poll::Ready(Err(_)) => self.abort = None,
                Poll::Pending => {}
            }
        }
        self.messages.poll_recv(cx).map(|m| m.map(Ok))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    #[tokio::test]
    async fn an_abort_is_delivered_before_buffered_messages() {
        let (tx, rx) = mpsc::channel(4);
        let (abort_tx, abort_rx) = oneshot::channel();
        tx.send(WatchChangesFrame::default()).await.unwrap();
        abort_tx.send(ServiceError::SlowConsumer).unwrap();
        let mut stream = WatchStream {
            messages: rx,
            abort: Some(abort_rx),
            done: false,
        };
        let first = stream.next().await.unwrap();
        assert!(matches!(first, Err(ServiceError::SlowConsumer)));
        assert!(stream.next().await.is_none());
    }

    #[tokio::test]
    async fn messages_flow_until_the_watcher_ends() {
        let (tx, rx) = mpsc::channel(4);
        let (abort_tx, abort_rx) = oneshot::channel::<ServiceError>();
        tx.send(WatchChangesFrame {
            revision: 7,
            ..Default::default()
        })
        .await
        .unwrap();
        drop((tx, abort_tx));
        let mut stream = WatchStream {
            messages: rx,
            abort: Some(abort_rx),
            done: false,
        };
        assert_eq!(stream.next().await.unwrap().unwrap().revision, 7);
        assert!(stream.next().await.is_none());
    }
}
