//! Catch-up then live: a subscription reads stored events by position, then waits for the
//! writer to publish a new head. Reading by position from one cursor means the hand-over
//! from catch-up to live can neither skip nor repeat an event.

use super::EventStore;
use crate::error::{Error, Result};
use crate::RecordedEvent;
use std::sync::Arc;
use tokio::sync::watch;

/// A cursor over the log, or over some categories of it, that yields stored events, then
/// waits for new ones.
pub struct Subscription {
    store: EventStore,
    next: u64,
    head: watch::Receiver<u64>,
    categories: Option<Arc<[String]>>,
}

impl Subscription {
    pub(super) fn new(
        store: EventStore,
        next: u64,
        head: watch::Receiver<u64>,
        categories: Option<Arc<[String]>>,
    ) -> Self {
        Self {
            store,
            next,
            head,
            categories,
        }
    }

    /// The position of the next event this subscription yields.
    pub fn position(&self) -> u64 {
        self.next
    }

    /// The next up to `max` events, waiting until at least one exists.
    pub async fn next_batch(&mut self, max: usize) -> Result<Vec<RecordedEvent>> {
        loop {
            let head = *self.head.borrow_and_update();
            if self.next < head {
                let (store, from) = (self.store.clone(), self.next);
                let categories = self.categories.clone();
                let (events, next) = tokio::task::spawn_blocking(move || match categories {
                    Some(categories) => store.read_categories(from, &categories, max),
                    None => store.read_all(from, max).map(|events| {
                        let next = from + events.len() as u64;
                        (events, next)
                    }),
                })
                .await
                .map_err(|_| Error::Unavailable("the reader task failed"))??;
                self.next = next;
                if !events.is_empty() {
                    return Ok(events);
                }
                continue;
            }
            if self.head.changed().await.is_err() {
                return Err(Error::Unavailable("the log is closed"));
            }
        }
    }
}
