//! The walking defaults of [`EventSource`]'s graph queries: plain walks
//! over `auth_events` as the source's views list them, each event visited
//! once per walk. A source with an auth-chain index overrides them.

use std::collections::{HashMap, HashSet};

use super::{agreed, for_each_key, AuthChain, EventSource, StateMap};

/// Every event reachable from `id` through `auth_events`.
pub(super) fn auth_chain<S: EventSource + ?Sized>(source: &S, id: &str) -> Option<AuthChain> {
    let start = source.event(id)?;
    let mut seen: HashSet<&str> = HashSet::new();
    let mut stack: Vec<&str> = start.auth_events.iter().map(String::as_str).collect();
    while let Some(next) = stack.pop() {
        if !seen.insert(next) {
            continue;
        }
        if let Some(event) = source.event(next) {
            stack.extend(event.auth_events.iter().map(String::as_str));
        }
    }
    Some(seen.into_iter().map(str::to_owned).collect())
}

/// Walks from `roots` (included) through `auth_events`, never entering an
/// event of `stop`, and returns what it saw.
pub(super) fn walk<'a, S: EventSource + ?Sized>(
    source: &'a S,
    roots: impl IntoIterator<Item = &'a str>,
    stop: &HashSet<&'a str>,
) -> HashSet<&'a str> {
    let mut seen: HashSet<&str> = HashSet::new();
    let mut stack: Vec<&str> = Vec::new();
    let mut visit = |id: &'a str, stack: &mut Vec<&'a str>| {
        if !stop.contains(id) && seen.insert(id) {
            stack.push(id);
        }
    };
    for root in roots {
        visit(root, &mut stack);
    }
    while let Some(next) = stack.pop() {
        for auth in source.event(next).into_iter().flat_map(|e| &e.auth_events) {
            visit(auth, &mut stack);
        }
    }
    seen
}

/// ∪ Cᵢ − ∩ Cᵢ, Cᵢ being the events of state set *i* and their auth chains.
///
/// Events held by every state set under the same key, and everything
/// below them, are in every Cᵢ; that part (usually nearly all of the room)
/// is walked once, and the walk of each state set stops where it meets it.
pub(super) fn auth_difference<S: EventSource + ?Sized>(source: &S, state_sets: &[StateMap]) -> AuthChain {
    if state_sets.len() < 2 {
        return AuthChain::new();
    }
    let mut common: Vec<&str> = Vec::new();
    for_each_key(state_sets, |_, row| {
        if agreed(row) {
            common.extend(row[0].map(String::as_str));
        }
    });
    let below_common = walk(source, common, &HashSet::new());

    let mut held_by: HashMap<&str, usize> = HashMap::new();
    for set in state_sets {
        for id in walk(source, set.values().map(String::as_str), &below_common) {
            *held_by.entry(id).or_default() += 1;
        }
    }
    held_by.into_iter().filter(|&(_, sets)| sets < state_sets.len()).map(|(id, _)| id.to_owned()).collect()
}

/// Where a depth-first walk stands with an event.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mark {
    Open,
    /// Whether a conflicted event lies strictly below it.
    Done(bool),
}

/// The events on `auth_events` paths between events of `conflicted`, the
/// ends included: those reachable from a conflicted event from which a
/// conflicted event is reachable in turn.
pub(super) fn conflicted_subgraph<S: EventSource + ?Sized>(
    source: &S,
    conflicted: &HashSet<&str>,
) -> AuthChain {
    let no_auth: &[String] = &[];
    let auth_of = |id: &str| source.event(id).map_or(no_auth, |e| e.auth_events.as_slice());
    let mut marks: HashMap<&str, Mark> = HashMap::new();
    // An explicit stack: auth chains can be far deeper than the call stack.
    let mut stack: Vec<(&str, &[String], usize)> = Vec::new();
    for &root in conflicted {
        if marks.contains_key(root) {
            continue;
        }
        marks.insert(root, Mark::Open);
        stack.push((root, auth_of(root), 0));
        while let Some(top) = stack.last_mut() {
            let (id, auth, next) = *top;
            if let Some(child) = auth.get(next) {
                top.2 += 1;
                if !marks.contains_key(child.as_str()) {
                    marks.insert(child, Mark::Open);
                    stack.push((child, auth_of(child), 0));
                }
                continue;
            }
            let below = auth
                .iter()
                .any(|c| conflicted.contains(c.as_str()) || marks.get(c.as_str()) == Some(&Mark::Done(true)));
            marks.insert(id, Mark::Done(below));
            stack.pop();
        }
    }
    let between = marks.into_iter().filter(|(_, mark)| *mark == Mark::Done(true)).map(|(id, _)| id);
    conflicted.iter().copied().chain(between).map(str::to_owned).collect()
}
