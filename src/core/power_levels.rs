//! Power levels: a parsed view of `m.room.power_levels` content with the
//! spec's defaults, the room creators (unlimited power in room v12), and the
//! rules for changing power levels (the `m.room.power_levels` part of the
//! authorisation rules).
//!
//! The normative text is the `m.room.power_levels` schema in the
//! client-server API, the authorisation rules of rooms v1 to v12, and the
//! deprecated formats older versions accept (`v1-stringy-power-levels`:
//! integers written as strings, v1–v9; `v1-floaty-power-levels`: floats,
//! truncated, v1–v5). This
//! module only reads JSON values it is handed; it knows nothing of storage,
//! HTTP or the clock, and it does not decide membership: `auth` does.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;

use serde_json::{Map, Value};

use super::ids::parse_user_id;
use super::room_version::RoomVersion;

/// The largest power level written as a JSON integer in a room that
/// enforces canonical JSON (v6 on): the top of its integer range. Older
/// rooms, and strings in v1–v9, can say more; such values are held as
/// `i64`, saturating at its bounds, which keeps their order.
pub const LEVEL_MAX: i64 = (1 << 53) - 1;
/// The smallest such power level: the bottom of canonical JSON's range.
pub const LEVEL_MIN: i64 = -LEVEL_MAX;

/// `ban` when the content does not set it.
pub const DEFAULT_BAN: i64 = 50;
/// `kick` when the content does not set it.
pub const DEFAULT_KICK: i64 = 50;
/// `redact` when the content does not set it.
pub const DEFAULT_REDACT: i64 = 50;
/// `invite` when the content does not set it.
pub const DEFAULT_INVITE: i64 = 0;
/// `events_default` when the content does not set it.
pub const DEFAULT_EVENTS: i64 = 0;
/// `state_default` when the content does not set it. The schema of spec
/// v1.19 says 50 whether or not the room has a power levels event at all
/// (older texts said 0 when there was none).
pub const DEFAULT_STATE: i64 = 50;
/// `users_default` when the content does not set it.
pub const DEFAULT_USERS: i64 = 0;
/// `notifications.room` when the content does not set it.
pub const DEFAULT_NOTIFICATIONS_ROOM: i64 = 50;
/// Rooms v1–v11 without a power levels event: the creator's level.
pub const CREATOR_LEVEL_WITHOUT_EVENT: i64 = 100;

/// The notification key for `@room` mentions.
pub const NOTIFICATION_ROOM: &str = "room";

/// The seven top-level integer properties, in the order the spec lists them.
const NAMED: [&str; 7] =
    ["users_default", "events_default", "state_default", "ban", "redact", "kick", "invite"];

/// A user's power level. Room creators in room v12 have `Infinite`, which
/// compares above every finite level (and equal to itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Level {
    Finite(i64),
    Infinite,
}

impl Level {
    /// True if this level meets `required`.
    pub fn at_least(self, required: i64) -> bool {
        self >= Level::Finite(required)
    }
}

impl Ord for Level {
    fn cmp(&self, other: &Level) -> Ordering {
        match (self, other) {
            (Level::Finite(a), Level::Finite(b)) => a.cmp(b),
            (Level::Finite(_), Level::Infinite) => Ordering::Less,
            (Level::Infinite, Level::Finite(_)) => Ordering::Greater,
            (Level::Infinite, Level::Infinite) => Ordering::Equal,
        }
    }
}

impl PartialOrd for Level {
    fn partial_cmp(&self, other: &Level) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl From<i64> for Level {
    fn from(n: i64) -> Level {
        Level::Finite(n)
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Level::Finite(n) => write!(f, "{n}"),
            Level::Infinite => f.write_str("infinite (room creator)"),
        }
    }
}

/// The room's creators as the room version defines them.
///
/// v10: `content.creator` of `m.room.create`; v11: its `sender`; v12: its
/// `sender` plus `content.additional_creators`, and then they are
/// *privileged*: unlimited power that no power levels event can change.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Creators {
    ids: Vec<String>,
    privileged: bool,
}

impl Creators {
    /// Builds the set directly, mainly for callers that already know it.
    pub fn new(ids: Vec<String>, privileged: bool) -> Creators {
        Creators { ids, privileged }
    }

    /// Reads the creators from an `m.room.create` event. Malformed entries
    /// (a non-string `creator`, non-string `additional_creators` items) are
    /// skipped: the authorisation rules refuse such create events anyway.
    pub fn from_create(version: &RoomVersion, create: &Value) -> Creators {
        let content = create.get("content");
        let mut ids = Vec::new();
        let first = if version.create_has_creator_field {
            content.and_then(|c| c.get("creator"))
        } else {
            create.get("sender")
        };
        if let Some(id) = first.and_then(Value::as_str) {
            ids.push(id.to_owned());
        }
        if version.privileged_creators {
            let extra = content.and_then(|c| c.get("additional_creators")).and_then(Value::as_array);
            for id in extra.into_iter().flatten().filter_map(Value::as_str) {
                if !ids.iter().any(|known| known == id) {
                    ids.push(id.to_owned());
                }
            }
        }
        Creators { ids, privileged: version.privileged_creators }
    }

    /// True if `user_id` is a creator of the room.
    pub fn contains(&self, user_id: &str) -> bool {
        self.ids.iter().any(|id| id == user_id)
    }

    /// The creators, the create event's sender (or `creator`) first.
    pub fn ids(&self) -> &[String] {
        &self.ids
    }

    /// True if the creators have unlimited power (room v12 onwards).
    pub fn privileged(&self) -> bool {
        self.privileged
    }
}

/// A parsed view of `m.room.power_levels` content.
///
/// Values are kept as written (`None` when a property is absent) so that the
/// change rules can tell an added property from a changed one; the accessor
/// methods apply the spec's defaults.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PowerLevels {
    users_default: Option<i64>,
    events_default: Option<i64>,
    state_default: Option<i64>,
    ban: Option<i64>,
    redact: Option<i64>,
    kick: Option<i64>,
    invite: Option<i64>,
    events: BTreeMap<String, i64>,
    notifications: BTreeMap<String, i64>,
    users: BTreeMap<String, i64>,
    /// False when the room has no `m.room.power_levels` event.
    present: bool,
}

/// Parses `m.room.power_levels` content for `version`.
///
/// From room v10 every value must be a JSON integer; v1–v9 also accept
/// integers written as strings (optional whitespace around, an optional
/// sign, base 10 digits with any leading zeroes), and v1–v5 floats, which
/// are truncated towards zero. A JSON integer must lie in canonical JSON's
/// range where the version enforces it (v6 on). `events`, `notifications`
/// and `users` must be objects of such values, and the keys of `users`
/// must be valid user IDs. Nothing is refused by panicking: any other
/// value (a word, a boolean, null, an object) is an error that names the
/// offending property.
pub fn parse(version: &RoomVersion, content: &Value) -> Result<PowerLevels, String> {
    let Some(obj) = content.as_object() else {
        return Err("power levels content is not an object".to_owned());
    };
    let named = |key: &str| -> Result<Option<i64>, String> {
        obj.get(key).map(|v| level_value(version, v).map_err(|e| format!("`{key}` {e}"))).transpose()
    };
    let mut pl = PowerLevels {
        users_default: named("users_default")?,
        events_default: named("events_default")?,
        state_default: named("state_default")?,
        ban: named("ban")?,
        redact: named("redact")?,
        kick: named("kick")?,
        invite: named("invite")?,
        present: true,
        ..PowerLevels::default()
    };
    pl.events = level_map(version, obj, "events")?;
    pl.notifications = level_map(version, obj, "notifications")?;
    pl.users = level_map(version, obj, "users")?;
    if let Some(bad) = pl.users.keys().find(|id| parse_user_id(id).is_none()) {
        return Err(format!("`users` has a key that is not a valid user ID: {bad}"));
    }
    Ok(pl)
}

/// Reads one power level value.
fn level_value(version: &RoomVersion, v: &Value) -> Result<i64, String> {
    match v {
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                if version.strict_canonical_json && !(LEVEL_MIN..=LEVEL_MAX).contains(&i) {
                    return Err(format!("is outside the canonical JSON integer range: {n}"));
                }
                return Ok(i);
            }
            if n.is_u64() {
                // Above i64::MAX: only where canonical JSON is not enforced.
                if version.strict_canonical_json {
                    return Err(format!("is outside the canonical JSON integer range: {n}"));
                }
                return Ok(i64::MAX);
            }
            match n.as_f64() {
                // Truncated towards zero; `as` saturates at i64's bounds.
                Some(f) if version.float_power_levels && f.is_finite() => Ok(f.trunc() as i64),
                _ => Err(format!("must be an integer, not {n}")),
            }
        }
        Value::String(s) if !version.integer_power_levels => {
            parse_stringy(s).ok_or_else(|| format!("is not an integer: {s:?}"))
        }
        Value::String(s) => Err(format!("must be an integer, not the string {s:?}")),
        other => Err(format!("must be an integer, not {other}")),
    }
}

/// `v1-stringy-power-levels`: optional leading and trailing whitespace, an
/// optional single `+` or `-`, then base 10 digits, any leading zeroes
/// allowed. The spec sets no range; values beyond `i64` saturate.
fn parse_stringy(s: &str) -> Option<i64> {
    let t = s.trim();
    let (negative, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut magnitude: i64 = 0;
    for digit in digits.bytes() {
        magnitude = magnitude.saturating_mul(10).saturating_add(i64::from(digit - b'0'));
    }
    Some(if negative { magnitude.saturating_neg() } else { magnitude })
}

/// Reads an object of power level values, such as `events`.
fn level_map(
    version: &RoomVersion,
    obj: &Map<String, Value>,
    key: &str,
) -> Result<BTreeMap<String, i64>, String> {
    let Some(v) = obj.get(key) else {
        return Ok(BTreeMap::new());
    };
    let Some(inner) = v.as_object() else {
        return Err(format!("`{key}` must be an object"));
    };
    inner
        .iter()
        .map(|(k, v)| level_value(version, v).map(|n| (k.clone(), n)).map_err(|e| format!("`{key}.{k}` {e}")))
        .collect()
}

impl PowerLevels {
    /// The levels of a room without an `m.room.power_levels` event.
    pub fn absent() -> PowerLevels {
        PowerLevels::default()
    }

    /// The levels given by the room's power levels event, if any.
    pub fn from_event(version: &RoomVersion, event: Option<&Value>) -> Result<PowerLevels, String> {
        match event {
            None => Ok(PowerLevels::absent()),
            Some(ev) => parse(version, ev.get("content").unwrap_or(&Value::Null)),
        }
    }

    /// The content these levels were parsed from, every value a JSON
    /// integer (strings and floats of older versions normalised), only the
    /// properties that were given.
    pub fn to_content(&self) -> Value {
        let mut out = serde_json::Map::new();
        for (key, v) in [
            ("users_default", self.users_default),
            ("events_default", self.events_default),
            ("state_default", self.state_default),
            ("ban", self.ban),
            ("redact", self.redact),
            ("kick", self.kick),
            ("invite", self.invite),
        ] {
            if let Some(v) = v {
                out.insert(key.to_owned(), Value::from(v));
            }
        }
        let map = |m: &BTreeMap<String, i64>| {
            Value::Object(m.iter().map(|(k, v)| (k.clone(), Value::from(*v))).collect())
        };
        out.insert("events".to_owned(), map(&self.events));
        out.insert("notifications".to_owned(), map(&self.notifications));
        out.insert("users".to_owned(), map(&self.users));
        Value::Object(out)
    }

    /// True if these levels come from an `m.room.power_levels` event.
    pub fn is_present(&self) -> bool {
        self.present
    }

    /// The power level of `user_id`.
    ///
    /// Privileged creators (room v12) are [`Level::Infinite`]. Otherwise the
    /// user's entry in `users`, else `users_default`; in a room without a
    /// power levels event the creator has 100 before v12.
    pub fn user_level(&self, user_id: &str, creators: &Creators) -> Level {
        if creators.privileged() && creators.contains(user_id) {
            return Level::Infinite;
        }
        if !self.present && creators.contains(user_id) {
            return Level::Finite(CREATOR_LEVEL_WITHOUT_EVENT);
        }
        Level::Finite(self.users.get(user_id).copied().unwrap_or_else(|| self.users_default()))
    }

    /// The level required to send an event of type `kind`: its entry in
    /// `events`, else `state_default` or `events_default`.
    pub fn event_level(&self, kind: &str, is_state: bool) -> i64 {
        match self.events.get(kind) {
            Some(&n) => n,
            None if is_state => self.state_default(),
            None => self.events_default(),
        }
    }

    pub fn ban(&self) -> i64 {
        self.ban.unwrap_or(DEFAULT_BAN)
    }

    pub fn kick(&self) -> i64 {
        self.kick.unwrap_or(DEFAULT_KICK)
    }

    pub fn invite(&self) -> i64 {
        self.invite.unwrap_or(DEFAULT_INVITE)
    }

    /// The level required to redact other users' events.
    pub fn redact(&self) -> i64 {
        self.redact.unwrap_or(DEFAULT_REDACT)
    }

    pub fn events_default(&self) -> i64 {
        self.events_default.unwrap_or(DEFAULT_EVENTS)
    }

    pub fn state_default(&self) -> i64 {
        self.state_default.unwrap_or(DEFAULT_STATE)
    }

    pub fn users_default(&self) -> i64 {
        self.users_default.unwrap_or(DEFAULT_USERS)
    }

    /// The level required to trigger the notification `key`. Only `room`
    /// has a default (50); other keys absent from `notifications` are
    /// `None`, and the caller decides what an undefined key means.
    pub fn notification_level(&self, key: &str) -> Option<i64> {
        match self.notifications.get(key) {
            Some(&n) => Some(n),
            None if key == NOTIFICATION_ROOM => Some(DEFAULT_NOTIFICATIONS_ROOM),
            None => None,
        }
    }

    /// The level required for an `@room` notification.
    pub fn notifications_room(&self) -> i64 {
        self.notifications.get(NOTIFICATION_ROOM).copied().unwrap_or(DEFAULT_NOTIFICATIONS_ROOM)
    }

    /// The explicit `users` entries.
    pub fn users(&self) -> &BTreeMap<String, i64> {
        &self.users
    }

    /// The explicit `events` entries.
    pub fn events(&self) -> &BTreeMap<String, i64> {
        &self.events
    }

    /// The explicit `notifications` entries.
    pub fn notifications(&self) -> &BTreeMap<String, i64> {
        &self.notifications
    }

    /// The raw value of a named top-level property, as written.
    fn named(&self, key: &str) -> Option<i64> {
        match key {
            "users_default" => self.users_default,
            "events_default" => self.events_default,
            "state_default" => self.state_default,
            "ban" => self.ban,
            "redact" => self.redact,
            "kick" => self.kick,
            "invite" => self.invite,
            _ => None,
        }
    }
}

/// The authorisation rules for replacing `old` with `new`, sent by `sender`
/// whose current level is `sender_level`.
///
/// `old` is [`PowerLevels::absent`] when the room has no power levels event
/// yet; then only the v12 creators rule applies. Otherwise nobody may add,
/// change or remove a value above their own level or set one above it, and
/// nobody may change or remove another user's entry at or above their own
/// level (lowering one's own entry is always allowed).
pub fn check_change(
    version: &RoomVersion,
    sender_level: Level,
    old: &PowerLevels,
    new: &PowerLevels,
    sender: &str,
    creators: &Creators,
) -> Result<(), String> {
    if version.privileged_creators {
        if let Some(creator) = new.users.keys().find(|id| creators.contains(id)) {
            return Err(format!("power levels may not list the room creator {creator} in `users`"));
        }
    }
    if !old.is_present() {
        return Ok(());
    }
    let above = |n: i64| Level::Finite(n) > sender_level;

    for key in NAMED {
        let (was, now) = (old.named(key), new.named(key));
        if was == now {
            continue;
        }
        if let Some(n) = was.filter(|&n| above(n)) {
            return Err(format!("cannot change `{key}` from {n}: above your power level {sender_level}"));
        }
        if let Some(n) = now.filter(|&n| above(n)) {
            return Err(format!("cannot set `{key}` to {n}: above your power level {sender_level}"));
        }
    }

    // `notifications` is held to these rules from v6; before, anyone who
    // may send power levels may change it.
    let empty = BTreeMap::new();
    let (old_notifications, new_notifications) = if version.notifications_power_levels {
        (&old.notifications, &new.notifications)
    } else {
        (&empty, &empty)
    };
    for (field, was_map, now_map) in
        [("events", &old.events, &new.events), ("notifications", old_notifications, new_notifications)]
    {
        for key in was_map.keys().chain(now_map.keys()) {
            let (was, now) = (was_map.get(key).copied(), now_map.get(key).copied());
            if was == now {
                continue;
            }
            if let Some(n) = was.filter(|&n| above(n)) {
                return Err(format!(
                    "cannot change `{field}.{key}` from {n}: above your power level {sender_level}"
                ));
            }
            if let Some(n) = now.filter(|&n| above(n)) {
                return Err(format!(
                    "cannot set `{field}.{key}` to {n}: above your power level {sender_level}"
                ));
            }
        }
    }

    for user in old.users.keys().chain(new.users.keys()) {
        let (was, now) = (old.users.get(user).copied(), new.users.get(user).copied());
        if was == now {
            continue;
        }
        if user != sender {
            if let Some(n) = was.filter(|&n| Level::Finite(n) >= sender_level) {
                return Err(format!(
                    "cannot change the power level of {user} ({n}): not below your power level {sender_level}"
                ));
            }
        }
        if let Some(n) = now.filter(|&n| above(n)) {
            return Err(format!("cannot give {user} power level {n}: above your power level {sender_level}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::room_version::{SUPPORTED, V1, V10, V11, V12, V5, V9};
    use serde_json::json;

    const ALICE: &str = "@alice:example.org";
    const BOB: &str = "@bob:example.org";
    const CAROL: &str = "@carol:example.org";

    fn pl(content: Value) -> PowerLevels {
        parse(&V11, &content).expect("valid power levels")
    }

    fn solo(user: &str, privileged: bool) -> Creators {
        Creators::new(vec![user.to_owned()], privileged)
    }

    #[test]
    fn level_ordering() {
        assert!(Level::Infinite > Level::Finite(LEVEL_MAX));
        assert!(Level::Finite(-1) < Level::Finite(0));
        assert_eq!(Level::Infinite, Level::Infinite);
        assert!(Level::Infinite.at_least(LEVEL_MAX));
        assert!(!Level::Finite(49).at_least(50));
        assert_eq!(Level::from(7).to_string(), "7");
    }

    #[test]
    fn defaults_with_an_empty_event() {
        let p = pl(json!({}));
        assert!(p.is_present());
        assert_eq!((p.ban(), p.kick(), p.redact(), p.invite()), (50, 50, 50, 0));
        assert_eq!((p.events_default(), p.state_default(), p.users_default()), (0, 50, 0));
        assert_eq!(p.notifications_room(), 50);
        assert_eq!(p.event_level("m.room.name", true), 50);
        assert_eq!(p.event_level("m.room.message", false), 0);
        // With an event, the creator is an ordinary user before v12.
        assert_eq!(p.user_level(ALICE, &solo(ALICE, false)), Level::Finite(0));
    }

    #[test]
    fn defaults_without_an_event() {
        let p = PowerLevels::absent();
        assert!(!p.is_present());
        assert_eq!(p.user_level(ALICE, &solo(ALICE, false)), Level::Finite(100));
        assert_eq!(p.user_level(BOB, &solo(ALICE, false)), Level::Finite(0));
        assert_eq!(p.user_level(ALICE, &solo(ALICE, true)), Level::Infinite);
        assert_eq!(p.event_level("m.room.name", true), DEFAULT_STATE);
        assert_eq!(p.ban(), 50);
        assert_eq!(PowerLevels::from_event(&V10, None), Ok(PowerLevels::absent()));
    }

    #[test]
    fn explicit_values() {
        let p = pl(json!({
            "ban": 60, "kick": 40, "redact": 30, "invite": 10, "events_default": 5,
            "state_default": 70, "users_default": 3,
            "events": {"m.room.name": 20, "m.reaction": 1},
            "notifications": {"room": 80},
            "users": {ALICE: 100}
        }));
        assert_eq!((p.ban(), p.kick(), p.redact(), p.invite()), (60, 40, 30, 10));
        assert_eq!(p.event_level("m.room.name", true), 20);
        assert_eq!(p.event_level("m.room.topic", true), 70);
        assert_eq!(p.event_level("m.reaction", false), 1);
        assert_eq!(p.event_level("m.room.message", false), 5);
        assert_eq!(p.notifications_room(), 80);
        assert_eq!(p.notification_level("other"), None);
        assert_eq!(p.notification_level("room"), Some(80));
        assert_eq!(p.user_level(ALICE, &Creators::default()), Level::Finite(100));
        assert_eq!(p.user_level(BOB, &Creators::default()), Level::Finite(3));
    }

    #[test]
    fn v12_creators_are_infinite() {
        let p = parse(&V12, &json!({"users": {BOB: 100}})).expect("valid");
        let creators = Creators::new(vec![ALICE.to_owned(), CAROL.to_owned()], true);
        assert_eq!(p.user_level(ALICE, &creators), Level::Infinite);
        assert_eq!(p.user_level(CAROL, &creators), Level::Infinite);
        assert_eq!(p.user_level(BOB, &creators), Level::Finite(100));
    }

    #[test]
    fn creators_from_create_events() {
        let create = json!({
            "type": "m.room.create", "sender": ALICE,
            "content": {"creator": BOB, "additional_creators": [CAROL, 5, ALICE]}
        });
        let v10 = Creators::from_create(&V10, &create);
        assert_eq!((v10.ids(), v10.privileged()), (&[BOB.to_owned()][..], false));
        let v11 = Creators::from_create(&V11, &create);
        assert_eq!(v11.ids(), &[ALICE.to_owned()][..]);
        let v12 = Creators::from_create(&V12, &create);
        assert_eq!(v12.ids(), &[ALICE.to_owned(), CAROL.to_owned()][..]);
        assert!(v12.privileged() && v12.contains(CAROL) && !v12.contains(BOB));
    }

    #[test]
    fn integer_versions_refuse_strings_and_floats() {
        for version in [&V10, &V11, &V12] {
            for bad in [
                json!({"ban": "50"}),
                json!({"ban": 50.0}),
                json!({"ban": null}),
                json!({"events": {"m.room.name": "50"}}),
                json!({"notifications": {"room": "50"}}),
                json!({"users": {ALICE: "100"}}),
                json!({"users": {ALICE: true}}),
                json!({"users": ["x"]}),
                json!({"events": 5}),
                json!({"users": {"alice": 100}}),
                json!({"kick": LEVEL_MAX + 1}),
                json!({"kick": LEVEL_MIN - 1}),
                json!({"kick": u64::MAX}),
                json!([]),
            ] {
                assert!(parse(version, &bad).is_err(), "v{} accepted {bad}", version.id);
            }
            assert!(parse(version, &json!({"kick": LEVEL_MAX, "ban": LEVEL_MIN})).is_ok());
        }
        let err = parse(&V10, &json!({"ban": "50"})).expect_err("refused");
        assert!(err.contains("`ban`") && err.contains("string"), "{err}");
    }

    /// Every version before v10 (`v1-stringy-power-levels`).
    fn stringy_versions() -> impl Iterator<Item = &'static RoomVersion> {
        SUPPORTED.iter().copied().filter(|v| !v.integer_power_levels)
    }

    #[test]
    fn stringy_versions_accept_integer_strings() {
        assert_eq!(stringy_versions().count(), 9);
        for version in stringy_versions() {
            let p = parse(version, &json!({"ban": " +0050 ", "users": {ALICE: "-7"}})).expect("valid");
            assert_eq!(p.ban(), 50);
            assert_eq!(p.user_level(ALICE, &Creators::default()), Level::Finite(-7));
            // The fragment's examples of the format.
            for (text, n) in [
                ("100", 100),
                ("000100", 100),
                ("+100", 100),
                ("-100", -100),
                (" 100 ", 100),
                (" 00100 ", 100),
                (" +100 ", 100),
                (" -100 ", -100),
                ("\t\n7\r", 7),
                ("-0", 0),
            ] {
                assert_eq!(parse(version, &json!({ "kick": text })).map(|p| p.kick()), Ok(n), "{text:?}");
            }
            for bad in ["5.0", "", " ", "+", "-", "1e3", "--1", "+-1", "1 2", "0x10", "1_000", "١٢", "ten"]
            {
                assert!(parse(version, &json!({ "ban": bad })).is_err(), "v{} {bad:?}", version.id);
            }
            // The spec sets no range on strings: beyond i64 they saturate,
            // keeping their order, instead of failing.
            let huge = parse(
                version,
                &json!({"users": {ALICE: "99999999999999999999", BOB: "-99999999999999999999"}}),
            )
            .expect("valid");
            assert_eq!(huge.user_level(ALICE, &Creators::default()), Level::Finite(i64::MAX));
            assert_eq!(huge.user_level(BOB, &Creators::default()), Level::Finite(-i64::MAX));
        }
    }

    /// The example of `v1-stringy-power-levels`, whole.
    #[test]
    fn stringy_spec_example() {
        let content = json!({
            "ban": "50",
            "events": {"m.room.power_levels": "100"},
            "events_default": "0",
            "state_default": "50",
            "users": {"@example:localhost": "100"},
            "users_default": "0"
        });
        for version in stringy_versions() {
            let p = parse(version, &content).expect("valid before v10");
            assert_eq!(p.ban(), 50);
            assert_eq!(p.event_level("m.room.power_levels", true), 100);
            assert_eq!((p.events_default(), p.state_default(), p.users_default()), (0, 50, 0));
            assert_eq!(p.user_level("@example:localhost", &Creators::default()), Level::Finite(100));
        }
        for version in [&V10, &V11, &V12] {
            assert!(parse(version, &content).is_err());
        }
    }

    /// `v1-floaty-power-levels` (rooms v1–v5): floats are truncated; from
    /// v6 canonical JSON has no floats at all.
    #[test]
    fn floats_are_truncated_until_v6() {
        let content = json!({
            "ban": 50,
            "events": {"m.room.power_levels": 100},
            "events_default": 0,
            "state_default": 50,
            "users": {"@example:example.org": 100, "@alice:localhost": 50, "@bob:localhost": 50.57},
            "users_default": 0
        });
        let floaty: Vec<&RoomVersion> = SUPPORTED.iter().copied().filter(|v| v.float_power_levels).collect();
        assert_eq!(
            floaty,
            [
                &V1,
                &crate::core::room_version::V2,
                &crate::core::room_version::V3,
                &crate::core::room_version::V4,
                &V5
            ]
        );
        for version in &floaty {
            let p = parse(version, &content).expect("valid");
            let none = Creators::default();
            assert_eq!(p.user_level("@bob:localhost", &none), p.user_level("@alice:localhost", &none));
            assert_eq!(p.user_level("@bob:localhost", &none), Level::Finite(50));
            for (value, n) in
                [(json!(5.114698E4), 51146), (json!(-1.9), -1), (json!(0.5), 0), (json!(1e300), i64::MAX)]
            {
                assert_eq!(parse(version, &json!({ "kick": value })).map(|p| p.kick()), Ok(n), "{value}");
            }
        }
        for version in SUPPORTED.iter().filter(|v| !v.float_power_levels) {
            assert!(parse(version, &content).is_err(), "v{} took a float", version.id);
        }
    }

    /// Canonical JSON's integer range binds JSON integers from v6 only.
    #[test]
    fn integer_range_from_v6() {
        let big = json!({"ban": 1_i64 << 60, "kick": LEVEL_MIN - 1, "users": {ALICE: u64::MAX}});
        for version in SUPPORTED {
            let parsed = parse(version, &big);
            if version.strict_canonical_json {
                assert!(parsed.is_err(), "v{}", version.id);
            } else {
                let p = parsed.expect("valid before v6");
                assert_eq!((p.ban(), p.kick()), (1 << 60, LEVEL_MIN - 1));
                assert_eq!(p.user_level(ALICE, &Creators::default()), Level::Finite(i64::MAX));
            }
        }
        for version in SUPPORTED {
            assert!(parse(version, &json!({"ban": LEVEL_MAX, "kick": LEVEL_MIN})).is_ok());
        }
    }

    #[test]
    fn odd_values_are_errors_in_every_version() {
        for version in SUPPORTED {
            for bad in [
                json!({"ban": null}),
                json!({"ban": true}),
                json!({"ban": {"n": 1}}),
                json!({"ban": [50]}),
                json!({"events": 5}),
                json!({"events": {"m.room.name": "lots"}}),
                json!({"users": ["x"]}),
                json!({"users": {"alice": 100}}),
                json!({"users": {ALICE: false}}),
                json!({"notifications": {"room": {}}}),
                json!("50"),
                json!(null),
            ] {
                let err = parse(version, &bad).expect_err("refused");
                assert!(!err.is_empty());
            }
        }
        let err = parse(&V9, &json!({"users": {ALICE: "lots"}})).expect_err("refused");
        assert!(err.contains("users") && err.contains("lots"), "{err}");
    }

    fn change(sender_level: i64, old: Value, new: Value) -> Result<(), String> {
        check_change(&V11, Level::Finite(sender_level), &pl(old), &pl(new), BOB, &Creators::default())
    }

    #[test]
    fn change_rules() {
        let base =
            json!({"users": {ALICE: 100, BOB: 50, CAROL: 50}, "ban": 50, "events": {"m.room.name": 50}});
        // Raising someone (or oneself) above one's own level.
        let up = json!({"users": {ALICE: 100, BOB: 51, CAROL: 50}, "ban": 50, "events": {"m.room.name": 50}});
        assert!(change(50, base.clone(), up).is_err());
        // Granting up to one's own level.
        let grant = json!({"users": {ALICE: 100, BOB: 50, CAROL: 50, "@dan:example.org": 50},
                           "ban": 50, "events": {"m.room.name": 50}});
        assert_eq!(change(50, base.clone(), grant), Ok(()));
        // Demoting a peer at the same level.
        let demote =
            json!({"users": {ALICE: 100, BOB: 50, CAROL: 0}, "ban": 50, "events": {"m.room.name": 50}});
        assert!(change(50, base.clone(), demote).is_err());
        // Demoting oneself, even by removing one's entry.
        let self_demote = json!({"users": {ALICE: 100, CAROL: 50}, "ban": 50, "events": {"m.room.name": 50}});
        assert_eq!(change(50, base.clone(), self_demote), Ok(()));
        // Named properties: new value above, or old value above.
        let ban_up =
            json!({"users": {ALICE: 100, BOB: 50, CAROL: 50}, "ban": 60, "events": {"m.room.name": 50}});
        assert!(change(50, base.clone(), ban_up.clone()).is_err());
        assert!(change(50, ban_up, base.clone()).is_err());
        // Adding a named property at one's own level.
        let kick = json!({"users": {ALICE: 100, BOB: 50, CAROL: 50}, "ban": 50, "kick": 50,
                          "events": {"m.room.name": 50}});
        assert_eq!(change(50, base.clone(), kick), Ok(()));
        // events entries: removal of an entry above, addition above.
        let strict = json!({"users": {ALICE: 100, BOB: 50, CAROL: 50}, "ban": 50,
                            "events": {"m.room.name": 50, "m.room.tombstone": 100}});
        assert!(change(50, strict.clone(), base.clone()).is_err());
        assert!(change(50, base.clone(), strict).is_err());
        // notifications entries.
        let notif = json!({"users": {ALICE: 100, BOB: 50, CAROL: 50}, "ban": 50,
                           "events": {"m.room.name": 50}, "notifications": {"room": 70}});
        assert!(change(50, base.clone(), notif).is_err());
        // Unchanged content is always fine.
        assert_eq!(change(0, base.clone(), base), Ok(()));
    }

    /// v6 put `notifications` under the rules `events` follows ("updates
    /// rules 10.4 and 10.5"); before, a sender may set any value there.
    #[test]
    fn notifications_are_held_to_the_rules_from_v6() {
        let old = json!({"users": {BOB: 50}, "notifications": {"room": 50}});
        let raised = json!({"users": {BOB: 50}, "notifications": {"room": 100}});
        let from_high = json!({"users": {BOB: 50}, "notifications": {"room": 90}});
        for version in SUPPORTED.iter().filter(|v| !v.privileged_creators) {
            let parse = |v: &Value| parse(version, v).expect("valid");
            let none = Creators::default();
            let up = check_change(version, Level::Finite(50), &parse(&old), &parse(&raised), BOB, &none);
            let down = check_change(version, Level::Finite(50), &parse(&from_high), &parse(&old), BOB, &none);
            if version.notifications_power_levels {
                assert!(up.is_err() && down.is_err(), "v{}", version.id);
            } else {
                assert_eq!((up, down), (Ok(()), Ok(())), "v{}", version.id);
            }
            // `events` is held to them in every version.
            let events = json!({"users": {BOB: 50}, "events": {"m.room.name": 100}});
            let r = check_change(version, Level::Finite(50), &parse(&old), &parse(&events), BOB, &none);
            assert!(r.is_err(), "v{}", version.id);
        }
    }

    #[test]
    fn change_without_previous_event_is_free_before_v12() {
        let new = pl(json!({"users": {ALICE: 100, BOB: 1000}}));
        let r =
            check_change(&V11, Level::Finite(100), &PowerLevels::absent(), &new, ALICE, &solo(ALICE, false));
        assert_eq!(r, Ok(()));
    }

    #[test]
    fn v12_users_may_not_list_creators() {
        let creators = Creators::new(vec![ALICE.to_owned(), CAROL.to_owned()], true);
        let old = parse(&V12, &json!({"users": {BOB: 50}})).expect("valid");
        for listed in [ALICE, CAROL] {
            let new = parse(&V12, &json!({"users": {BOB: 50, listed: 100}})).expect("valid");
            let err = check_change(&V12, Level::Infinite, &old, &new, ALICE, &creators).expect_err("refused");
            assert!(err.contains(listed), "{err}");
            let err = check_change(&V12, Level::Infinite, &PowerLevels::absent(), &new, ALICE, &creators);
            assert!(err.is_err());
        }
        // An infinite sender may set anything within range.
        let new = parse(&V12, &json!({"users": {BOB: LEVEL_MAX}, "ban": LEVEL_MAX})).expect("valid");
        assert_eq!(check_change(&V12, Level::Infinite, &old, &new, ALICE, &creators), Ok(()));
    }
}
