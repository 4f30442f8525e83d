//! [`MemoryEvents`]: an [`EventSource`] over events held in memory, for
//! tests, benchmarks and small resolutions a caller has all the events of
//! (such as a `/send_join` answer). Auth chains are walked on demand and
//! remembered.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::Value;

use super::{AuthChain, EventSource, ResolvedEventView};

/// Events by ID, with their views and the auth chains asked for so far.
#[derive(Debug, Default)]
pub struct MemoryEvents {
    events: HashMap<String, (ResolvedEventView, Value)>,
    chains: RefCell<HashMap<String, Arc<AuthChain>>>,
}

impl MemoryEvents {
    pub fn new() -> MemoryEvents {
        MemoryEvents::default()
    }

    /// Adds the event `event_id` (its view read from `pdu`). Returns false,
    /// adding nothing, if the PDU lacks what a view needs.
    pub fn insert(&mut self, event_id: &str, pdu: Value, rejected: bool) -> bool {
        match ResolvedEventView::from_pdu(event_id, &pdu, rejected) {
            Some(view) => {
                self.insert_view(view, pdu);
                true
            }
            None => false,
        }
    }

    /// Adds an event whose view the caller built.
    pub fn insert_view(&mut self, view: ResolvedEventView, pdu: Value) {
        // A new event may change the chains of events citing it (if it was
        // missing before); forget them all rather than track which.
        self.chains.get_mut().clear();
        self.events.insert(view.event_id.clone(), (view, pdu));
    }

    /// Marks the event rejected or not.
    pub fn set_rejected(&mut self, event_id: &str, rejected: bool) {
        if let Some((view, _)) = self.events.get_mut(event_id) {
            view.rejected = rejected;
        }
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }
}

impl EventSource for MemoryEvents {
    fn event(&self, id: &str) -> Option<&ResolvedEventView> {
        self.events.get(id).map(|(view, _)| view)
    }

    fn pdu(&self, id: &str) -> Option<&Value> {
        self.events.get(id).map(|(_, pdu)| pdu)
    }

    /// Walks `auth_events`, taking in whole any chain already known
    /// instead of walking below it.
    fn auth_chain(&self, id: &str) -> Option<Arc<AuthChain>> {
        if let Some(known) = self.chains.borrow().get(id) {
            return Some(Arc::clone(known));
        }
        let start = self.event(id)?;
        let chains = self.chains.borrow();
        let mut seen: HashSet<&str> = HashSet::new();
        let mut stack: Vec<&str> = start.auth_events.iter().map(String::as_str).collect();
        while let Some(next) = stack.pop() {
            if !seen.insert(next) {
                continue;
            }
            if let Some(known) = chains.get(next) {
                seen.extend(known.iter().map(String::as_str));
            } else if let Some(event) = self.event(next) {
                stack.extend(event.auth_events.iter().map(String::as_str));
            }
        }
        let chain: Arc<AuthChain> = Arc::new(seen.into_iter().map(str::to_owned).collect());
        drop(chains);
        self.chains.borrow_mut().insert(id.to_owned(), Arc::clone(&chain));
        Some(chain)
    }
}
