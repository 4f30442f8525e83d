//! Room versions: every rule that differs between the versions served is a
//! field here, so each algorithm asks the version instead of matching on its
//! name. New rooms get [`DEFAULT`] (v12, the spec's recommendation); v10 and
//! v11 can be created on request and are needed to join older rooms.

/// Which redaction algorithm a version uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redaction {
    /// Rooms v9 and v10: `join_authorised_via_users_server` kept in members.
    V9,
    /// Rooms v11 and v12: create keeps all content, power levels keep
    /// `invite`, `origin`/`membership`/`prev_state` no longer top-level keys.
    V11,
}

/// Which state resolution algorithm a version uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateRes {
    V2,
    /// Room v12: state resolution v2.1 (starts from an empty state and
    /// replays the full conflicted subgraph).
    V2_1,
}

#[derive(Debug, PartialEq, Eq)]
pub struct RoomVersion {
    pub id: &'static str,
    pub redaction: Redaction,
    pub state_res: StateRes,
    /// v1–v10: `m.room.create` content carries `creator`; from v11 the
    /// sender of the create event is the creator.
    pub create_has_creator_field: bool,
    /// v12: the room ID is `!` + the create event's reference hash, the
    /// create event has no `room_id`, and it is never listed in `auth_events`.
    pub room_id_from_create: bool,
    /// v12: the create event's sender and `additional_creators` have
    /// unlimited power and may not appear in `m.room.power_levels` `users`.
    pub privileged_creators: bool,
    /// v7+: the `knock` join rule and membership.
    pub knocking: bool,
    /// v8+: the `restricted` join rule; v10+: `knock_restricted`.
    pub restricted_joins: bool,
    pub knock_restricted: bool,
    /// v10+: power level values must be JSON integers (no strings).
    pub integer_power_levels: bool,
}

pub const V10: RoomVersion = RoomVersion {
    id: "10",
    redaction: Redaction::V9,
    state_res: StateRes::V2,
    create_has_creator_field: true,
    room_id_from_create: false,
    privileged_creators: false,
    knocking: true,
    restricted_joins: true,
    knock_restricted: true,
    integer_power_levels: true,
};

pub const V11: RoomVersion =
    RoomVersion { id: "11", redaction: Redaction::V11, create_has_creator_field: false, ..V10 };

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
pub const SUPPORTED: &[&RoomVersion] = &[&V10, &V11, &V12];

/// The rules of a room version by its identifier.
pub fn get(id: &str) -> Option<&'static RoomVersion> {
    SUPPORTED.iter().copied().find(|v| v.id == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_and_differences() {
        assert_eq!(get("12"), Some(&V12));
        assert_eq!(get("9"), None);
        assert_eq!(DEFAULT.id, "12");
        let creator_field: Vec<bool> = SUPPORTED.iter().map(|v| v.create_has_creator_field).collect();
        assert_eq!(creator_field, [true, false, false]);
        let hashed_ids: Vec<bool> = SUPPORTED.iter().map(|v| v.room_id_from_create).collect();
        assert_eq!(hashed_ids, [false, false, true]);
        assert_eq!((V10.redaction, V11.redaction), (Redaction::V9, Redaction::V11));
    }
}
