//! State resolution for room v1, as its room version page defines it (the
//! algorithm known to reset state; room v2 replaced it).
//!
//! A key is conflicted when the state sets hold different events for it; a
//! key only some sets hold is not. Conflicts are resolved per key, against
//! the state *R* built so far: power levels first, then join rules, then
//! memberships (each key's chain of events in ascending `depth` order,
//! kept while each next event passes the authorisation rules), then every
//! other key (the deepest event that passes).
//!
//! Two points the spec leaves open are read as Synapse, which resolves most
//! v1 rooms there are, reads them: the join rules and membership conflicts
//! are each resolved against *R* as it stood before that group (not against
//! each other's results), and when no event of an ordinary key passes, the
//! least deep one is kept rather than none.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use super::{
    for_each_key, need, need_pdu, EventSource, ResolveError, ResolvedEventView, StateMap, JOIN_RULES, MEMBER,
    POWER_LEVELS,
};
use crate::core::auth::{self, StateLookup};
use crate::core::room_version::RoomVersion;

/// `(type, state_key)`, borrowed.
type Key<'a> = (&'a str, &'a str);

/// Resolves `state_sets` of a room v1, authorising with the rules of
/// `version`.
pub fn resolve_v1(
    version: &RoomVersion,
    state_sets: &[StateMap],
    source: &dyn EventSource,
) -> Result<StateMap, ResolveError> {
    let mut state: HashMap<Key, &str> = HashMap::new();
    let mut conflicts: BTreeMap<Key, Vec<&str>> = BTreeMap::new();
    for_each_key(state_sets, |(kind, key), row| {
        let mut ids: Vec<&str> = Vec::new();
        for id in row.iter().flatten() {
            if !ids.contains(&id.as_str()) {
                ids.push(id);
            }
        }
        match ids[..] {
            [only] => {
                state.insert((kind.as_str(), key.as_str()), only);
            }
            _ => {
                conflicts.insert((kind.as_str(), key.as_str()), ids);
            }
        }
    });

    let mut groups: [Vec<(Key, Vec<&ResolvedEventView>)>; 4] = Default::default();
    for (key, ids) in conflicts {
        let events = ids.iter().map(|id| need(source, id)).collect::<Result<Vec<_>, _>>()?;
        let group = match key.0 {
            POWER_LEVELS => 0,
            JOIN_RULES => 1,
            MEMBER => 2,
            _ => 3,
        };
        groups[group].push((key, events));
    }
    let [power, join_rules, members, others] = groups;
    for group in [power, join_rules, members] {
        let mut chosen = Vec::with_capacity(group.len());
        for (key, events) in group {
            chosen.push((key, keep_while_allowed(version, source, &state, key, events)?));
        }
        state.extend(chosen);
    }
    let mut chosen = Vec::with_capacity(others.len());
    for (key, events) in others {
        chosen.push((key, deepest_allowed(version, source, &state, events)?));
    }
    state.extend(chosen);

    Ok(state
        .into_iter()
        .map(|((kind, key), id)| ((kind.to_owned(), key.to_owned()), id.to_owned()))
        .collect())
}

/// SHA-1 of the event ID, the spec's tie-break between events of one depth.
pub(super) fn sha1(id: &str) -> [u8; 20] {
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, id.as_bytes());
    let mut out = [0u8; 20];
    out.copy_from_slice(digest.as_ref());
    out
}

/// The state *R*, with one key possibly replaced.
struct Against<'s, 'a> {
    source: &'a dyn EventSource,
    state: &'s HashMap<Key<'a>, &'a str>,
    replaced: Option<(Key<'a>, &'a str)>,
}

impl StateLookup for Against<'_, '_> {
    fn get(&self, kind: &str, state_key: &str) -> Option<&Value> {
        let id = match self.replaced {
            Some(((k, s), id)) if k == kind && s == state_key => Some(id),
            _ => self.state.get(&(kind, state_key)).copied(),
        };
        self.source.pdu(id?)
    }
}

fn allowed(
    version: &RoomVersion,
    source: &dyn EventSource,
    against: &Against,
    event: &ResolvedEventView,
) -> Result<bool, ResolveError> {
    Ok(auth::check(version, need_pdu(source, &event.event_id)?, against).is_ok())
}

/// An authorisation event's conflict: in ascending depth (descending SHA-1
/// of the ID at one depth), the first event, then each next one while it
/// is allowed in *R* with its predecessor in place.
fn keep_while_allowed<'a>(
    version: &RoomVersion,
    source: &'a dyn EventSource,
    state: &HashMap<Key<'a>, &'a str>,
    key: Key<'a>,
    mut events: Vec<&'a ResolvedEventView>,
) -> Result<&'a str, ResolveError> {
    events.sort_by_cached_key(|e| (e.depth, std::cmp::Reverse(sha1(&e.event_id))));
    let mut kept = events[0].event_id.as_str();
    for event in &events[1..] {
        let against = Against { source, state, replaced: Some((key, kept)) };
        if !allowed(version, source, &against, event)? {
            break;
        }
        kept = event.event_id.as_str();
    }
    Ok(kept)
}

/// Any other conflict: in descending depth (ascending SHA-1 of the ID at
/// one depth), the first event allowed in *R*; the last if none is.
fn deepest_allowed<'a>(
    version: &RoomVersion,
    source: &'a dyn EventSource,
    state: &HashMap<Key<'a>, &'a str>,
    mut events: Vec<&'a ResolvedEventView>,
) -> Result<&'a str, ResolveError> {
    events.sort_by_cached_key(|e| (std::cmp::Reverse(e.depth), sha1(&e.event_id)));
    let against = Against { source, state, replaced: None };
    for event in &events {
        if allowed(version, source, &against, event)? {
            return Ok(event.event_id.as_str());
        }
    }
    Ok(events[events.len() - 1].event_id.as_str())
}
