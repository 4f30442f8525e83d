//! State resolution v2 (rooms v2 to v11) and v2.1 (room v12), as the v2
//! fragment of the room version pages and v12's changes to it define them.
//!
//! 1. Power events of the full conflicted set, with their auth ancestors in
//!    that set, in reverse topological power order, through the iterative
//!    auth checks: from the unconflicted state (v2) or from nothing (v2.1).
//! 2. The rest of the full conflicted set in mainline order (based on the
//!    power levels the first pass resolved), through the same checks.
//! 3. The unconflicted state on top.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};

use serde_json::Value;

use super::{
    agreed, for_each_key, need, need_pdu, EventSource, ResolveError, ResolvedEventView, StateMap, CREATE,
    POWER_LEVELS,
};
use crate::core::auth::{self, StateLookup};
use crate::core::power_levels::{Creators, Level, PowerLevels};
use crate::core::room_version::RoomVersion;

/// `(type, state_key)`, borrowed.
type Key<'a> = (&'a str, &'a str);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    V2,
    V2_1,
}

/// State resolution v2 (rooms v2 to v11) of `state_sets`, authorising with
/// the rules of `version`.
pub fn resolve_v2(
    version: &RoomVersion,
    state_sets: &[StateMap],
    source: &dyn EventSource,
) -> Result<StateMap, ResolveError> {
    resolve_with(Variant::V2, version, state_sets, source)
}

/// State resolution v2.1 (room v12) of `state_sets`: as v2, but the full
/// conflicted set also holds the conflicted state subgraph, and the first
/// iterative auth checks start from an empty state.
pub fn resolve_v2_1(
    version: &RoomVersion,
    state_sets: &[StateMap],
    source: &dyn EventSource,
) -> Result<StateMap, ResolveError> {
    resolve_with(Variant::V2_1, version, state_sets, source)
}

fn resolve_with<'a>(
    variant: Variant,
    version: &RoomVersion,
    state_sets: &'a [StateMap],
    source: &'a dyn EventSource,
) -> Result<StateMap, ResolveError> {
    let Some(first) = state_sets.first() else {
        return Ok(StateMap::new());
    };

    // The unconflicted state map is `first` less `conflicted_keys`.
    let mut conflicted_keys: HashSet<Key<'a>> = HashSet::new();
    let mut conflicted: HashSet<&'a str> = HashSet::new();
    for_each_key(state_sets, |(kind, key), row| {
        if !agreed(row) {
            conflicted_keys.insert((kind.as_str(), key.as_str()));
            conflicted.extend(row.iter().flatten().map(|id| id.as_str()));
        }
    });
    if conflicted.is_empty() {
        return Ok(first.clone());
    }

    // The full conflicted set, as the events' own IDs (which live as long
    // as the source).
    let difference = source.auth_difference(state_sets);
    let subgraph = match variant {
        Variant::V2 => HashSet::new(),
        Variant::V2_1 => source.conflicted_subgraph(&conflicted),
    };
    let mut full: HashSet<&'a str> = HashSet::new();
    for id in conflicted
        .iter()
        .copied()
        .chain(difference.iter().map(String::as_str))
        .chain(subgraph.iter().map(String::as_str))
    {
        full.insert(need(source, id)?.event_id.as_str());
    }

    // Step 1: power events and their auth ancestors in the full conflicted
    // set, each with those ancestors (which the ordering must respect).
    let mut power: Vec<&'a str> = Vec::new();
    for &id in &full {
        if need(source, id)?.is_power_event() {
            power.push(id);
        }
    }
    let mut ancestors = source.ancestors_among(&power, &full)?;
    // Their ancestors' own ancestors are among those already found.
    let mut below: Vec<&'a str> =
        ancestors.values().flatten().copied().filter(|id| !ancestors.contains_key(id)).collect();
    below.sort_unstable();
    below.dedup();
    ancestors.extend(source.ancestors_among(&below, &full)?);
    let power_sorted = power_order(version, source, &ancestors)?;

    // Step 2.
    let mut partial = Partial {
        base: match variant {
            Variant::V2 => Some((first, &conflicted_keys)),
            Variant::V2_1 => None,
        },
        over: HashMap::new(),
    };
    iterative_auth(version, source, &mut partial, &power_sorted)?;

    // Steps 3 and 4.
    let others: Vec<&'a str> = full.iter().copied().filter(|id| !ancestors.contains_key(id)).collect();
    let resolved_pl = partial.id(POWER_LEVELS, "");
    let others = mainline_order(source, resolved_pl, &others)?;
    iterative_auth(version, source, &mut partial, &others)?;

    // Step 5: the unconflicted state map wins.
    let mut resolved = first.clone();
    resolved.retain(|(kind, key), _| !conflicted_keys.contains(&(kind.as_str(), key.as_str())));
    for ((kind, key), id) in partial.over {
        let unconflicted =
            first.contains_key(&(kind.to_owned(), key.to_owned())) && !conflicted_keys.contains(&(kind, key));
        if !unconflicted {
            resolved.insert((kind.to_owned(), key.to_owned()), id.to_owned());
        }
    }
    Ok(resolved)
}

/// The partially resolved state: what the iterative auth checks added,
/// over (in v2) the unconflicted state map.
struct Partial<'k, 'a> {
    /// A state set and the keys on which the sets disagree.
    base: Option<(&'a StateMap, &'k HashSet<Key<'a>>)>,
    over: HashMap<Key<'a>, &'a str>,
}

impl<'a> Partial<'_, 'a> {
    fn id(&self, kind: &str, key: &str) -> Option<&'a str> {
        if let Some(&id) = self.over.get(&(kind, key)) {
            return Some(id);
        }
        let (first, conflicted_keys) = self.base?;
        if conflicted_keys.contains(&(kind, key)) {
            return None;
        }
        first.get(&(kind.to_owned(), key.to_owned())).map(String::as_str)
    }
}

/// What an event is authorised against during the iterative auth checks:
/// the partial state, and for a key it lacks, the event's own auth event of
/// that key unless that one was rejected.
struct Against<'p, 'k, 'a> {
    source: &'a dyn EventSource,
    partial: &'p Partial<'k, 'a>,
    own: HashMap<Key<'a>, &'a Value>,
}

impl StateLookup for Against<'_, '_, '_> {
    fn get(&self, kind: &str, state_key: &str) -> Option<&Value> {
        match self.partial.id(kind, state_key) {
            Some(id) => self.source.pdu(id),
            None => self.own.get(&(kind, state_key)).copied(),
        }
    }
}

/// The iterative auth checks: each event of `events` in turn, added to the
/// partial state if the authorisation rules of `version` allow it there.
fn iterative_auth<'a>(
    version: &RoomVersion,
    source: &'a dyn EventSource,
    partial: &mut Partial<'_, 'a>,
    events: &[&'a str],
) -> Result<(), ResolveError> {
    for &id in events {
        let view = need(source, id)?;
        let Some(state_key) = view.state_key.as_deref() else {
            continue;
        };
        let pdu = need_pdu(source, id)?;
        let mut own: HashMap<Key<'a>, &'a Value> = HashMap::new();
        let usable = |auth_id: &str| {
            let auth = source.event(auth_id).filter(|auth| !auth.rejected)?;
            let key = auth.state_key.as_deref()?;
            Some(((auth.kind.as_str(), key), source.pdu(auth_id)?))
        };
        for (key, auth_pdu) in view.auth_events.iter().filter_map(|a| usable(a)) {
            own.entry(key).or_insert(auth_pdu);
        }
        if version.room_id_from_create {
            // Never among the auth events: the room ID names it.
            if let Some((key, create)) = create_id_from_room(pdu).and_then(|c| usable(&c)) {
                own.entry(key).or_insert(create);
            }
        }
        let allowed = auth::check(version, pdu, &Against { source, partial: &*partial, own }).is_ok();
        if allowed {
            partial.over.insert((view.kind.as_str(), state_key), view.event_id.as_str());
        }
    }
    Ok(())
}

/// The ID of the create event a room v12 event's `room_id` names.
fn create_id_from_room(pdu: &Value) -> Option<String> {
    let room_id = pdu.get("room_id")?.as_str()?;
    Some(format!("${}", room_id.strip_prefix('!')?))
}

/// The `m.room.power_levels` event among `view`'s auth events.
fn power_levels_of<'a>(
    source: &'a dyn EventSource,
    view: &ResolvedEventView,
) -> Option<&'a ResolvedEventView> {
    view.auth_events.iter().filter_map(|a| source.event(a)).find(|a| a.is(POWER_LEVELS))
}

/// Senders' power levels as their events' auth events give them, each
/// power levels and create event read once.
struct SenderLevels<'v, 'a> {
    version: &'v RoomVersion,
    source: &'a dyn EventSource,
    levels: HashMap<&'a str, PowerLevels>,
    creators: HashMap<&'a str, Creators>,
}

impl<'a> SenderLevels<'_, 'a> {
    /// The level of `view`'s sender "when looking at its auth events". An
    /// event without power levels there has the levels of a room without
    /// any (the creator 100 before v12); power levels that do not parse
    /// count as absent. In room v12 the creators are above everyone.
    fn of(&mut self, view: &'a ResolvedEventView) -> Level {
        let (version, source) = (self.version, self.source);
        let create = if version.room_id_from_create {
            let id = source.pdu(&view.event_id).and_then(create_id_from_room);
            id.and_then(|id| source.event(&id))
        } else {
            view.auth_events.iter().filter_map(|a| source.event(a)).find(|a| a.is(CREATE))
        };
        let (no_creators, absent) = (Creators::default(), PowerLevels::absent());
        let creators = match create {
            Some(create) => self.creators.entry(create.event_id.as_str()).or_insert_with(|| {
                source
                    .pdu(&create.event_id)
                    .map(|pdu| Creators::from_create(version, pdu))
                    .unwrap_or_default()
            }),
            None => &no_creators,
        };
        let levels = match power_levels_of(source, view) {
            Some(pl) => self.levels.entry(pl.event_id.as_str()).or_insert_with(|| {
                PowerLevels::from_event(version, source.pdu(&pl.event_id))
                    .unwrap_or_else(|_| PowerLevels::absent())
            }),
            None => &absent,
        };
        levels.user_level(&view.sender, creators)
    }
}

/// Where an event stands in the reverse topological power ordering:
/// highest sender level, then earliest timestamp, then smallest ID first.
type Rank<'a> = (Reverse<Level>, i64, &'a str);

/// The *reverse topological power ordering* of the events that are the
/// keys of `ancestors`, each mapped to its auth ancestors among them:
/// Kahn's algorithm, taking at each step the ready event whose sender has
/// the highest power level, then the earliest `origin_server_ts`, then the
/// smallest event ID.
///
/// The ancestors are the whole auth chains (restricted to these events),
/// not only direct auth events, so an event always follows every event it
/// descends from even when the path between them leaves the set.
pub(super) fn power_order<'a>(
    version: &RoomVersion,
    source: &'a dyn EventSource,
    ancestors: &HashMap<&'a str, Vec<&'a str>>,
) -> Result<Vec<&'a str>, ResolveError> {
    let mut levels = SenderLevels { version, source, levels: HashMap::new(), creators: HashMap::new() };
    let mut rank: HashMap<&'a str, Rank<'a>> = HashMap::new();
    for &id in ancestors.keys() {
        let view = need(source, id)?;
        rank.insert(id, (Reverse(levels.of(view)), view.origin_server_ts, view.event_id.as_str()));
    }

    let mut waiting: HashMap<&'a str, usize> = HashMap::new();
    let mut after: HashMap<&'a str, Vec<&'a str>> = HashMap::new();
    for (&id, above) in ancestors {
        let above: Vec<&'a str> =
            above.iter().copied().filter(|a| *a != id && ancestors.contains_key(a)).collect();
        waiting.insert(id, above.len());
        for a in above {
            after.entry(a).or_default().push(id);
        }
    }
    let mut ready: BinaryHeap<Reverse<Rank<'a>>> =
        waiting.iter().filter(|(_, &n)| n == 0).map(|(id, _)| Reverse(rank[id])).collect();
    let mut sorted = Vec::with_capacity(ancestors.len());
    while let Some(Reverse((_, _, id))) = ready.pop() {
        sorted.push(id);
        for &next in after.get(id).into_iter().flatten() {
            let Some(n) = waiting.get_mut(next) else { continue };
            *n -= 1;
            if *n == 0 {
                ready.push(Reverse(rank[next]));
            }
        }
    }
    if sorted.len() < ancestors.len() {
        // An auth cycle (possible only with forged v1/v2 event IDs): the
        // events on it come last, in rank order.
        let placed: HashSet<&str> = sorted.iter().copied().collect();
        let mut rest: Vec<Rank<'a>> =
            ancestors.keys().filter(|id| !placed.contains(*id)).map(|id| rank[id]).collect();
        rest.sort_unstable();
        sorted.extend(rest.into_iter().map(|(_, _, id)| id));
    }
    Ok(sorted)
}

/// The *mainline ordering* of `events` based on the power levels event
/// `resolved_pl`: by mainline position, furthest from `resolved_pl` first
/// (an event whose power levels chain never meets the mainline first of
/// all), then `origin_server_ts`, then event ID.
pub(super) fn mainline_order<'a>(
    source: &'a dyn EventSource,
    resolved_pl: Option<&'a str>,
    events: &[&'a str],
) -> Result<Vec<&'a str>, ResolveError> {
    const OFF_MAINLINE: usize = usize::MAX;
    let mut position: HashMap<&'a str, usize> = HashMap::new();
    let mut mainline = resolved_pl.and_then(|id| source.event(id));
    while let Some(pl) = mainline {
        if position.contains_key(pl.event_id.as_str()) {
            break;
        }
        position.insert(pl.event_id.as_str(), position.len());
        mainline = power_levels_of(source, pl);
    }

    // The position of every power levels event met on the way, so each
    // chain below the mainline is walked once.
    let mut met: HashMap<&'a str, usize> = HashMap::new();
    let mut keyed: Vec<(Reverse<usize>, i64, &'a str)> = Vec::with_capacity(events.len());
    for &id in events {
        let view = need(source, id)?;
        let mut path: HashSet<&'a str> = HashSet::new();
        let mut at = power_levels_of(source, view);
        let found = loop {
            let Some(pl) = at else { break OFF_MAINLINE };
            let pl_id = pl.event_id.as_str();
            if let Some(&p) = position.get(pl_id).or_else(|| met.get(pl_id)) {
                break p;
            }
            if !path.insert(pl_id) {
                break OFF_MAINLINE;
            }
            at = power_levels_of(source, pl);
        };
        met.extend(path.into_iter().map(|pl_id| (pl_id, found)));
        keyed.push((Reverse(found), view.origin_server_ts, view.event_id.as_str()));
    }
    keyed.sort_unstable();
    Ok(keyed.into_iter().map(|(_, _, id)| id).collect())
}
