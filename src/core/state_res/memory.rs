//! [`MemoryEvents`]: an [`EventSource`] over events held in memory, for
//! tests, benchmarks and small resolutions a caller has all the events of
//! (such as a `/send_join` answer).
//!
//! Besides the events it keeps one index, built as events are added: who
//! cites each event in its `auth_events`. With it, the auth difference
//! is found without walking the state the forks share. Auth chains are
//! walked on demand and remembered.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::Value;

use super::{agreed, for_each_key, graph, AuthChain, EventSource, ResolveError, ResolvedEventView, StateMap};

/// Events by ID, with their views, who cites each, and the auth chains
/// asked for so far.
#[derive(Debug, Default)]
pub struct MemoryEvents {
    events: HashMap<String, (ResolvedEventView, Value)>,
    /// The events whose `auth_events` list each event.
    cited_by: HashMap<String, Vec<String>>,
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

    /// Adds an event whose view the caller built. An event already there
    /// is left as it is.
    pub fn insert_view(&mut self, view: ResolvedEventView, pdu: Value) {
        if self.events.contains_key(&view.event_id) {
            return;
        }
        // A new event may complete the chains of events that cite it (if it
        // was missing before); forget them all rather than track which.
        self.chains.get_mut().clear();
        for auth in &view.auth_events {
            self.cited_by.entry(auth.clone()).or_default().push(view.event_id.clone());
        }
        self.events.insert(view.event_id.clone(), (view, pdu));
    }

    /// Marks the event rejected or not.
    pub fn set_rejected(&mut self, event_id: &str, rejected: bool) {
        if let Some((view, _)) = self.events.get_mut(event_id) {
            view.rejected = rejected;
        }
    }

    /// The IDs of the events held, in no order.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.events.keys().map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// True if an event of `common` has `id` in its auth chain. Walks up
    /// through `cited_by`, remembering in `known` the answer for `id` and,
    /// when it is no, for everything above it.
    fn below_any<'a>(
        &'a self,
        id: &'a str,
        common: &HashSet<&str>,
        known: &mut HashMap<&'a str, bool>,
    ) -> bool {
        if let Some(&answer) = known.get(id) {
            return answer;
        }
        let mut seen: HashSet<&str> = HashSet::from([id]);
        let mut stack = vec![id];
        while let Some(next) = stack.pop() {
            for up in self.cited_by.get(next).into_iter().flatten().map(String::as_str) {
                if common.contains(up) || known.get(up) == Some(&true) {
                    known.insert(id, true);
                    return true;
                }
                if known.get(up) != Some(&false) && seen.insert(up) {
                    stack.push(up);
                }
            }
        }
        known.extend(seen.into_iter().map(|above| (above, false)));
        false
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

    /// One walk below all of `ids`, each event walked holding the set of
    /// `among` below it as bits, instead of a chain listed per event.
    fn ancestors_among<'e>(
        &self,
        ids: &[&'e str],
        among: &HashSet<&'e str>,
    ) -> Result<HashMap<&'e str, Vec<&'e str>>, ResolveError> {
        let members: Vec<&'e str> = among.iter().copied().collect();
        let bit: HashMap<&str, usize> = members.iter().enumerate().map(|(i, &id)| (id, i)).collect();
        let words = members.len().div_ceil(64);
        // Below each event walked, the members of its auth chain (`None`:
        // none). An event is entered as `None` when first met, which also
        // ends the walk on a cycle.
        let mut below: HashMap<&str, Option<Box<[u64]>>> = HashMap::new();
        let mut stack: Vec<(&str, &[String], usize)> = Vec::new();
        let mut found = HashMap::with_capacity(ids.len());
        for &id in ids {
            let start = self.event(id).ok_or_else(|| ResolveError::MissingEvent(id.to_owned()))?;
            if !below.contains_key(id) {
                below.insert(start.event_id.as_str(), None);
                stack.push((start.event_id.as_str(), &start.auth_events, 0));
            }
            while let Some(top) = stack.last_mut() {
                let (node, auth, next) = *top;
                if let Some(child) = auth.get(next) {
                    top.2 += 1;
                    if !below.contains_key(child.as_str()) {
                        below.insert(child, None);
                        if let Some(event) = self.event(child) {
                            stack.push((event.event_id.as_str(), &event.auth_events, 0));
                        }
                    }
                    continue;
                }
                let mut bits: Option<Box<[u64]>> = None;
                for child in auth {
                    let own = bit.get(child.as_str());
                    let inherited = below.get(child.as_str()).and_then(Option::as_deref);
                    if own.is_none() && inherited.is_none() {
                        continue;
                    }
                    let acc = bits.get_or_insert_with(|| vec![0; words].into_boxed_slice());
                    if let Some(&i) = own {
                        acc[i / 64] |= 1 << (i % 64);
                    }
                    for (word, more) in acc.iter_mut().zip(inherited.into_iter().flatten()) {
                        *word |= more;
                    }
                }
                below.insert(node, bits);
                stack.pop();
            }
            let bits = below.get(id).and_then(Option::as_deref);
            let within = members
                .iter()
                .enumerate()
                .filter(|(i, _)| bits.is_some_and(|b| b[i / 64] >> (i % 64) & 1 == 1));
            found.insert(id, within.map(|(_, &m)| m).collect());
        }
        Ok(found)
    }

    /// Walks each state set's own events down to where the shared state
    /// begins; of what some sets reached and others did not, keeps what no
    /// shared event has in its auth chain (found through `cited_by`).
    fn auth_difference(&self, state_sets: &[StateMap]) -> AuthChain {
        if state_sets.len() < 2 {
            return AuthChain::new();
        }
        let mut common: HashSet<&str> = HashSet::new();
        let mut own: Vec<Vec<&str>> = vec![Vec::new(); state_sets.len()];
        for_each_key(state_sets, |_, row| {
            if agreed(row) {
                common.extend(row[0].map(String::as_str));
            } else {
                for (ids, id) in own.iter_mut().zip(row) {
                    ids.extend(id.map(String::as_str));
                }
            }
        });
        let mut held_by: HashMap<&str, usize> = HashMap::new();
        for roots in own {
            for id in graph::walk(self, roots, &common) {
                *held_by.entry(id).or_default() += 1;
            }
        }
        let mut known = HashMap::new();
        held_by
            .into_iter()
            .filter(|&(id, sets)| sets < state_sets.len() && !self.below_any(id, &common, &mut known))
            .map(|(id, _)| id.to_owned())
            .collect()
    }
}
