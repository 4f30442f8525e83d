//! Room versions: every rule that differs between the versions served is a
//! field here, so each algorithm asks the version instead of matching on its
//! name. New rooms get [`DEFAULT`] (v12, the spec's recommendation); every
//! version from 1 to 12 can be created on request, and is needed to join
//! older rooms.
//!
//! The normative text is each version's page in the spec (`rooms/v1` …
//! `rooms/v12`) and the fragments they share; each field names the
//! fragment or rule it stands for.

/// How a version identifies events, and how events cite one another in
/// `prev_events` and `auth_events`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventIds {
    /// Rooms v1 and v2 (`v1-event-ids`, `pdu_v1`): the event carries its
    /// own `event_id`, `$opaque:server`, chosen by the server that made it
    /// and covered by its signature, which that server must give too.
    /// `prev_events` and `auth_events` are `[event_id, {"sha256": hash}]`
    /// pairs, the hash being the cited event's reference hash.
    Opaque,
    /// Room v3: `$` and the reference hash in standard unpadded base64;
    /// no `event_id` in the event, references are plain event IDs.
    Hash,
    /// Rooms v4 on (`v4-event-ids`): as v3, in URL-safe unpadded base64.
    UrlSafeHash,
}

/// Which redaction algorithm a version uses, oldest first: each keeps
/// what the one before kept, except where noted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Redaction {
    /// Rooms v1–v5 (`v1-redactions`): `m.room.aliases` keeps `aliases`.
    V1,
    /// Rooms v6 and v7 (`v6-redactions`): `m.room.aliases` keeps nothing.
    V6,
    /// Room v8 (`rooms/v8`, "Redactions"): `m.room.join_rules` keeps `allow`.
    V8,
    /// Rooms v9 and v10 (`v9-redactions`): `join_authorised_via_users_server`
    /// kept in members.
    V9,
    /// Rooms v11 and v12 (`v11-redactions`): create keeps all content, power
    /// levels keep `invite`, redactions keep `content.redacts`, members
    /// `third_party_invite.signed`; `origin`/`membership`/`prev_state` are no
    /// longer top-level keys.
    V11,
}

/// Which state resolution algorithm a version uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateRes {
    /// Room v1: the original algorithm (`rooms/v1`, "State resolution").
    V1,
    /// Rooms v2–v11 (`v2-state-res`).
    V2,
    /// Room v12: state resolution v2.1 (starts from an empty state and
    /// replays the full conflicted subgraph).
    V2_1,
}

#[derive(Debug, PartialEq, Eq)]
pub struct RoomVersion {
    pub id: &'static str,
    /// Event IDs and the shape of `prev_events`/`auth_events`.
    pub event_ids: EventIds,
    pub redaction: Redaction,
    pub state_res: StateRes,
    /// v5+ (`v5-signing-requirements`): a signing key counts for an event
    /// only if its `valid_until_ts` (at most 7 days ahead) is at least the
    /// event's `origin_server_ts`.
    pub enforce_key_validity: bool,
    /// v6+ (`v6-canonical-json`): events must be canonical JSON — no
    /// floats, integers within ±(2^53 − 1) (`depth` too). Before, servers
    /// must not refuse events for that (`v1-canonical-json`); events this
    /// server builds are canonical in every version.
    pub strict_canonical_json: bool,
    /// v1–v5: auth rule 4, `m.room.aliases` is allowed when its
    /// `state_key` is the sender's server, whatever the sender's
    /// membership or power. v6 removed it.
    pub special_case_aliases: bool,
    /// v6+: the power levels change rules cover `notifications` as they
    /// cover `events`; before, `notifications` could be changed freely.
    pub notifications_power_levels: bool,
    /// v1–v2: auth rule 11 authorises `m.room.redaction` itself (redact
    /// level, or the same server in both event IDs). From v3 the rules
    /// allow it and "Handling redactions" decides whether it applies.
    pub redaction_auth_rule: bool,
    /// v1–v5 (`v1-floaty-power-levels`): a float power level is truncated
    /// towards zero.
    pub float_power_levels: bool,
    /// v10+: power level values must be JSON integers (no strings, see
    /// `v1-stringy-power-levels` for v1–v9).
    pub integer_power_levels: bool,
    /// v7+: the `knock` join rule and membership.
    pub knocking: bool,
    /// v8+: the `restricted` join rule and `join_authorised_via_users_server`.
    pub restricted_joins: bool,
    /// v10+: the `knock_restricted` join rule.
    pub knock_restricted: bool,
    /// v11+: `m.room.redaction` carries `redacts` in `content`, not at the
    /// top level (`v11-event-format`).
    pub redacts_in_content: bool,
    /// v1–v10: `m.room.create` content carries `creator`; from v11 the
    /// sender of the create event is the creator.
    pub create_has_creator_field: bool,
    /// v12: the room ID is `!` + the create event's reference hash, the
    /// create event has no `room_id`, and it is never listed in `auth_events`.
    pub room_id_from_create: bool,
    /// v12: the create event's sender and `additional_creators` have
    /// unlimited power and may not appear in `m.room.power_levels` `users`.
    pub privileged_creators: bool,
}

impl RoomVersion {
    /// True if events carry their own `event_id` (v1–v2), which must then
    /// be signed by that ID's server as well as by the sender's.
    pub fn event_id_in_event(&self) -> bool {
        self.event_ids == EventIds::Opaque
    }

    /// True if `prev_events` and `auth_events` are `[id, {"sha256": …}]`
    /// pairs (v1–v2) rather than plain event IDs.
    pub fn references_carry_hashes(&self) -> bool {
        self.event_ids == EventIds::Opaque
    }
}

pub const V1: RoomVersion = RoomVersion {
    id: "1",
    event_ids: EventIds::Opaque,
    redaction: Redaction::V1,
    state_res: StateRes::V1,
    enforce_key_validity: false,
    strict_canonical_json: false,
    special_case_aliases: true,
    notifications_power_levels: false,
    redaction_auth_rule: true,
    float_power_levels: true,
    integer_power_levels: false,
    knocking: false,
    restricted_joins: false,
    knock_restricted: false,
    redacts_in_content: false,
    create_has_creator_field: true,
    room_id_from_create: false,
    privileged_creators: false,
};

pub const V2: RoomVersion = RoomVersion { id: "2", state_res: StateRes::V2, ..V1 };

pub const V3: RoomVersion =
    RoomVersion { id: "3", event_ids: EventIds::Hash, redaction_auth_rule: false, ..V2 };

pub const V4: RoomVersion = RoomVersion { id: "4", event_ids: EventIds::UrlSafeHash, ..V3 };

pub const V5: RoomVersion = RoomVersion { id: "5", enforce_key_validity: true, ..V4 };

pub const V6: RoomVersion = RoomVersion {
    id: "6",
    redaction: Redaction::V6,
    strict_canonical_json: true,
    special_case_aliases: false,
    notifications_power_levels: true,
    float_power_levels: false,
    ..V5
};

pub const V7: RoomVersion = RoomVersion { id: "7", knocking: true, ..V6 };

pub const V8: RoomVersion = RoomVersion { id: "8", redaction: Redaction::V8, restricted_joins: true, ..V7 };

pub const V9: RoomVersion = RoomVersion { id: "9", redaction: Redaction::V9, ..V8 };

pub const V10: RoomVersion =
    RoomVersion { id: "10", integer_power_levels: true, knock_restricted: true, ..V9 };

pub const V11: RoomVersion = RoomVersion {
    id: "11",
    redaction: Redaction::V11,
    redacts_in_content: true,
    create_has_creator_field: false,
    ..V10
};

pub const V12: RoomVersion = RoomVersion {
    id: "12",
    state_res: StateRes::V2_1,
    room_id_from_create: true,
    privileged_creators: true,
    ..V11
};

/// The version new rooms get.
pub const DEFAULT: &RoomVersion = &V12;

/// Every version this server can create or join, oldest first.
pub const SUPPORTED: &[&RoomVersion] = &[&V1, &V2, &V3, &V4, &V5, &V6, &V7, &V8, &V9, &V10, &V11, &V12];

/// The rules of a room version by its identifier.
pub fn get(id: &str) -> Option<&'static RoomVersion> {
    SUPPORTED.iter().copied().find(|v| v.id == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The versions (by number) for which `rule` holds.
    fn where_true(rule: impl Fn(&RoomVersion) -> bool) -> Vec<u32> {
        SUPPORTED.iter().filter(|v| rule(v)).map(|v| v.id.parse::<u32>().expect("numeric ids")).collect()
    }

    #[test]
    fn lookup() {
        assert_eq!(get("12"), Some(&V12));
        assert_eq!(get("1"), Some(&V1));
        for unknown in ["0", "13", "", "01", " 1", "org.example.v1"] {
            assert_eq!(get(unknown), None, "{unknown:?}");
        }
        assert_eq!(DEFAULT.id, "12");
        let ids: Vec<&str> = SUPPORTED.iter().map(|v| v.id).collect();
        assert_eq!(ids, ["1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12"]);
    }

    /// Each rule holds for exactly the versions the spec's pages give it.
    #[test]
    fn the_table() {
        let upto = |n: u32| (1..=n).collect::<Vec<_>>();
        let from = |n: u32| (n..=12).collect::<Vec<_>>();
        assert_eq!(where_true(|v| v.event_ids == EventIds::Opaque), upto(2));
        assert_eq!(where_true(|v| v.event_ids == EventIds::Hash), [3]);
        assert_eq!(where_true(|v| v.event_ids == EventIds::UrlSafeHash), from(4));
        assert_eq!(where_true(RoomVersion::event_id_in_event), upto(2));
        assert_eq!(where_true(RoomVersion::references_carry_hashes), upto(2));
        assert_eq!(where_true(|v| v.redaction == Redaction::V1), upto(5));
        assert_eq!(where_true(|v| v.redaction == Redaction::V6), [6, 7]);
        assert_eq!(where_true(|v| v.redaction == Redaction::V8), [8]);
        assert_eq!(where_true(|v| v.redaction == Redaction::V9), [9, 10]);
        assert_eq!(where_true(|v| v.redaction == Redaction::V11), [11, 12]);
        assert_eq!(where_true(|v| v.state_res == StateRes::V1), [1]);
        assert_eq!(where_true(|v| v.state_res == StateRes::V2), (2..=11).collect::<Vec<_>>());
        assert_eq!(where_true(|v| v.state_res == StateRes::V2_1), [12]);
        assert_eq!(where_true(|v| v.enforce_key_validity), from(5));
        assert_eq!(where_true(|v| v.strict_canonical_json), from(6));
        assert_eq!(where_true(|v| v.special_case_aliases), upto(5));
        assert_eq!(where_true(|v| v.notifications_power_levels), from(6));
        assert_eq!(where_true(|v| v.redaction_auth_rule), upto(2));
        assert_eq!(where_true(|v| v.float_power_levels), upto(5));
        assert_eq!(where_true(|v| v.integer_power_levels), from(10));
        assert_eq!(where_true(|v| v.knocking), from(7));
        assert_eq!(where_true(|v| v.restricted_joins), from(8));
        assert_eq!(where_true(|v| v.knock_restricted), from(10));
        assert_eq!(where_true(|v| v.redacts_in_content), from(11));
        assert_eq!(where_true(|v| v.create_has_creator_field), upto(10));
        assert_eq!(where_true(|v| v.room_id_from_create), [12]);
        assert_eq!(where_true(|v| v.privileged_creators), [12]);
    }

    #[test]
    fn redaction_algorithms_are_ordered() {
        assert!(Redaction::V1 < Redaction::V6 && Redaction::V6 < Redaction::V8);
        assert!(Redaction::V8 < Redaction::V9 && Redaction::V9 < Redaction::V11);
    }
}
