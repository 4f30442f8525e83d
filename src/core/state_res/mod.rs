//! State resolution: given the room states at the tips of a fork, the one
//! state of the room after them. Room v1 uses the original algorithm
//! ([`resolve_v1`]), rooms v2 to v11 state resolution v2 ([`resolve_v2`]),
//! room v12 state resolution v2.1 ([`resolve_v2_1`]); [`resolve`] picks by
//! room version.
//!
//! The normative text is the spec's room version pages: "State resolution"
//! in room v1, the v2 fragment shared by rooms v2 to v11, and v12's changes
//! (the conflicted state subgraph; the first iterative auth checks start
//! from an empty state).
//!
//! Pure functions: everything they know about events comes through an
//! [`EventSource`], which the caller fills (the storage layer from its
//! tables and its auth-chain index; tests from [`MemoryEvents`]). No
//! storage, no network, no clock. Authorisation is `core::auth::check`
//! under the room version's rules; this module never judges an event itself.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use serde_json::Value;

use super::room_version::{RoomVersion, StateRes};

mod graph;
mod memory;
mod v1;
mod v2;

pub use memory::MemoryEvents;
pub use v1::resolve_v1;
pub use v2::{resolve_v2, resolve_v2_1};

/// A room state: `(type, state_key)` to the event ID holding it.
pub type StateMap = BTreeMap<(String, String), String>;

/// A set of event IDs, such as an event's auth chain.
pub type AuthChain = HashSet<String>;

const CREATE: &str = "m.room.create";
const MEMBER: &str = "m.room.member";
const POWER_LEVELS: &str = "m.room.power_levels";
const JOIN_RULES: &str = "m.room.join_rules";

/// What state resolution needs to know of one event, read once from its
/// JSON (by [`ResolvedEventView::from_pdu`] or by the storage layer's own
/// columns) so the algorithms never parse JSON while walking the graph.
///
/// The content itself is not copied here: the few rules that read it
/// (membership, power levels, the authorisation rules) take it from the
/// PDU the [`EventSource`] also holds, or from `membership`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedEventView {
    pub event_id: String,
    /// The event's `type`.
    pub kind: String,
    /// `None` for a message event (which never takes part).
    pub state_key: Option<String>,
    pub sender: String,
    pub origin_server_ts: i64,
    /// Used by room v1 only.
    pub depth: i64,
    pub auth_events: Vec<String>,
    /// Not used by state resolution v2; kept for callers and v1 tooling.
    pub prev_events: Vec<String>,
    /// `content.membership` of an `m.room.member` event.
    pub membership: Option<String>,
    /// The event was rejected when it was received (it never became
    /// state). A rejected event is never used in place of a state entry
    /// that is missing, but one that is itself being resolved is checked
    /// like any other (the spec's "Rejected events").
    pub rejected: bool,
}

impl ResolvedEventView {
    /// Reads the fields of `pdu`, whose ID is `event_id` (given, since from
    /// room v3 it is not part of the event). `auth_events` and
    /// `prev_events` may be lists of IDs (room v3+) or of `[id, hashes]`
    /// pairs (rooms v1 and v2). `None` if `type` or `sender` is not a
    /// string, or a listed event ID is malformed.
    pub fn from_pdu(event_id: &str, pdu: &Value, rejected: bool) -> Option<ResolvedEventView> {
        let kind = pdu.get("type")?.as_str()?.to_owned();
        let sender = pdu.get("sender")?.as_str()?.to_owned();
        let state_key = match pdu.get("state_key") {
            None => None,
            Some(key) => Some(key.as_str()?.to_owned()),
        };
        let integer = |key: &str| pdu.get(key).and_then(Value::as_i64).unwrap_or(0);
        let membership = if kind == MEMBER {
            pdu.pointer("/content/membership").and_then(Value::as_str).map(str::to_owned)
        } else {
            None
        };
        Some(ResolvedEventView {
            event_id: event_id.to_owned(),
            kind,
            state_key,
            sender,
            origin_server_ts: integer("origin_server_ts"),
            depth: integer("depth"),
            auth_events: event_ids(pdu.get("auth_events"))?,
            prev_events: event_ids(pdu.get("prev_events"))?,
            membership,
            rejected,
        })
    }

    /// A *power event*, as the spec defines it: a state event of type
    /// `m.room.power_levels` or `m.room.join_rules`, or a membership of
    /// `leave` or `ban` sent by someone other than its target (a kick or a
    /// ban). Synapse and ruma also count `m.room.create`, which the spec
    /// does not; it can only matter if a create event is itself conflicted.
    pub fn is_power_event(&self) -> bool {
        let Some(key) = self.state_key.as_deref() else {
            return false;
        };
        match self.kind.as_str() {
            POWER_LEVELS | JOIN_RULES => true,
            MEMBER => matches!(self.membership.as_deref(), Some("leave" | "ban")) && key != self.sender,
            _ => false,
        }
    }

    /// True for the event of `(kind, "")`.
    fn is(&self, kind: &str) -> bool {
        self.kind == kind && self.state_key.as_deref() == Some("")
    }
}

/// The IDs of `auth_events` or `prev_events`, in either event format.
fn event_ids(list: Option<&Value>) -> Option<Vec<String>> {
    let Some(list) = list else {
        return Some(Vec::new());
    };
    list.as_array()?
        .iter()
        .map(|item| match item {
            Value::String(id) => Some(id.clone()),
            Value::Array(pair) => pair.first()?.as_str().map(str::to_owned),
            _ => None,
        })
        .collect()
}

/// Where state resolution reads events and their auth chains.
///
/// Only [`EventSource::event`] and [`EventSource::pdu`] must be written.
/// The graph queries have defaults that walk `event`'s `auth_events`
/// (without memoisation; `ancestors_among` through `auth_chain`); a source
/// with an auth-chain index (a chain cover, say) should answer them from it.
/// [`MemoryEvents`] is one that does.
pub trait EventSource {
    /// The event `id`, if the source has it.
    fn event(&self, id: &str) -> Option<&ResolvedEventView>;

    /// The event `id` as JSON (its federation form), for the authorisation
    /// rules and power levels.
    fn pdu(&self, id: &str) -> Option<&Value>;

    /// The auth chain of `id`: every event reachable from it through
    /// `auth_events`, `id` itself excluded (unless it is on a cycle).
    /// `None` if the source does not have `id`.
    fn auth_chain(&self, id: &str) -> Option<Arc<AuthChain>> {
        graph::auth_chain(self, id).map(Arc::new)
    }

    /// For each event of `ids`, the events of `among` in its auth chain.
    /// The default asks [`EventSource::auth_chain`] for each; a source with
    /// a reachability index (such as a chain cover) can answer without
    /// listing whole chains.
    fn ancestors_among<'e>(
        &self,
        ids: &[&'e str],
        among: &HashSet<&'e str>,
    ) -> Result<HashMap<&'e str, Vec<&'e str>>, ResolveError> {
        let mut found = HashMap::with_capacity(ids.len());
        for &id in ids {
            let chain = self.auth_chain(id).ok_or_else(|| ResolveError::MissingEvent(id.to_owned()))?;
            let within: Vec<&'e str> = if chain.len() < among.len() {
                chain.iter().filter_map(|a| among.get(a.as_str()).copied()).collect()
            } else {
                among.iter().copied().filter(|a| chain.contains(*a)).collect()
            };
            found.insert(id, within);
        }
        Ok(found)
    }

    /// The *auth difference* of `state_sets`: ∪ Cᵢ − ∩ Cᵢ, where Cᵢ is the
    /// set of the events of state set *i* and their auth chains.
    ///
    /// A state set's own events are counted in its Cᵢ, as Synapse counts
    /// them (the spec's words take the auth chains alone). That changes one
    /// thing: an unconflicted event in the auth chains of one side only
    /// stays out of the full conflicted set, so it is not replayed (which
    /// in v2.1, starting from nothing, could otherwise shift the partial
    /// state). An override must keep this definition.
    fn auth_difference(&self, state_sets: &[StateMap]) -> AuthChain {
        graph::auth_difference(self, state_sets)
    }

    /// The *conflicted state subgraph* (room v12): every event on an
    /// `auth_events` path from one event of `conflicted` to another, the
    /// ends included.
    fn conflicted_subgraph(&self, conflicted: &HashSet<&str>) -> AuthChain {
        graph::conflicted_subgraph(self, conflicted)
    }
}

/// Why state could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResolveError {
    /// An event that takes part (a conflicted state entry, or an event the
    /// source itself named in an auth difference or subgraph) is not in the
    /// source, or has no JSON there. The caller must fetch it first.
    MissingEvent(String),
}

impl fmt::Display for ResolveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResolveError::MissingEvent(id) => write!(f, "state resolution needs the event {id}"),
        }
    }
}

impl std::error::Error for ResolveError {}

/// Resolves `state_sets` with the algorithm of `version`:
/// `version.state_res`.
pub fn resolve(
    version: &RoomVersion,
    state_sets: &[StateMap],
    source: &dyn EventSource,
) -> Result<StateMap, ResolveError> {
    match version.state_res {
        StateRes::V1 => resolve_v1(version, state_sets, source),
        StateRes::V2 => resolve_v2(version, state_sets, source),
        StateRes::V2_1 => resolve_v2_1(version, state_sets, source),
    }
}

/// Calls `each` with every key of the state sets, in order, and the event
/// each set holds for it (`None` where a set has none): one pass over the
/// sorted maps side by side, rather than a lookup per key per set.
fn for_each_key<'a>(
    state_sets: &'a [StateMap],
    mut each: impl FnMut(&'a (String, String), &[Option<&'a String>]),
) {
    let mut heads: Vec<_> = state_sets.iter().map(|set| set.iter().peekable()).collect();
    let mut row: Vec<Option<&String>> = vec![None; state_sets.len()];
    loop {
        let Some(key) = heads.iter_mut().filter_map(|h| h.peek().map(|&(k, _)| k)).min() else {
            return;
        };
        for (head, slot) in heads.iter_mut().zip(row.iter_mut()) {
            *slot = head.next_if(|&(k, _)| k == key).map(|(_, id)| id);
        }
        each(key, &row);
    }
}

/// True if every state set holds the same event (the unconflicted case).
fn agreed(row: &[Option<&String>]) -> bool {
    match row.split_first() {
        Some((Some(first), rest)) => rest.iter().all(|id| *id == Some(*first)),
        _ => false,
    }
}

/// The event's view, or the error naming it.
fn need<'s>(source: &'s dyn EventSource, id: &str) -> Result<&'s ResolvedEventView, ResolveError> {
    source.event(id).ok_or_else(|| ResolveError::MissingEvent(id.to_owned()))
}

/// The event's JSON, or the error naming it.
fn need_pdu<'s>(source: &'s dyn EventSource, id: &str) -> Result<&'s Value, ResolveError> {
    source.pdu(id).ok_or_else(|| ResolveError::MissingEvent(id.to_owned()))
}

#[cfg(test)]
mod tests;
