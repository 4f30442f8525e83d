//! Profiles and the user directory.
//!
//! A local user's display name and avatar live in `profiles`. Changing
//! either also sends a new `m.room.member` join event, with the new values,
//! into every room the user is joined to, in the same transaction, so the
//! other members see the change in their `/sync`.
//!
//! The user directory searches the users the searcher may see: those who
//! share a joined room with them (the searcher included, as they share
//! their own rooms), and those joined to a room whose join rule is
//! `public` or whose history is `world_readable`; with
//! `user_directory_search_all_users`, every local user as well.
//!
//! The profile of a user of another server is asked of their server
//! (`/query/profile`) and remembered for a minute
//! (`federation::memo::PROFILE_TTL_MS`); their server's 404 or 403 passes
//! on, a server that cannot be reached is a 502 (as in Synapse).

use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::api::{Request, Response};
use crate::app::App;
use crate::core::ids;
use crate::error::{Error, Result};
use crate::federation::queries;
use crate::log;
use crate::rooms::{self, NewEvent};
use crate::storage::{profiles, state, users};

/// Longest display name accepted, in characters.
pub const DISPLAYNAME_MAX_CHARS: usize = 256;
/// Longest avatar URL accepted, in bytes.
pub const AVATAR_URL_MAX_BYTES: usize = 1000;
/// Directory results when the client names no limit.
pub const SEARCH_LIMIT_DEFAULT: usize = 10;
/// Most directory results one search returns.
pub const SEARCH_LIMIT_MAX: usize = 100;
/// Longest directory search term accepted, in bytes.
pub const SEARCH_TERM_MAX_BYTES: usize = 512;
/// Most users one directory search considers (the visible users, by user
/// ID); bounds the work of a search on a server with very large rooms.
pub const SEARCH_SCAN_MAX: usize = 20_000;

/// The `{userId}` path parameter, a valid user ID, and the server it
/// belongs to.
fn user_param(req: &Request) -> Result<(&str, &str)> {
    let user_id = req.param("userId");
    match ids::parse_user_id(user_id) {
        Some((_, server)) => Ok((user_id, server)),
        None => Err(Error::invalid_param(format!("{user_id:?} is not a valid user ID"))),
    }
}

/// The profile of a local user; an unknown user is a 404. Also what this
/// server answers other servers (`api::federation::query::profile`).
pub fn local_profile(app: &App, user_id: &str) -> Result<profiles::Profile> {
    app.db.read(|c| {
        if !users::exists(c, user_id)? {
            return Err(Error::not_found("Profile not found"));
        }
        Ok(profiles::get(c, user_id)?.unwrap_or_default())
    })
}

/// The profile in the path as a JSON object: a local user's fields that
/// are set, or a remote user's as their server answered
/// (`federation::queries::profile`, cached briefly).
fn profile_of(app: &App, req: &Request) -> Result<Map<String, Value>> {
    let (user_id, server) = user_param(req)?;
    if server != app.config.server_name {
        let profile = queries::profile(app, user_id, server)?;
        return Ok(profile.as_object().cloned().unwrap_or_default());
    }
    let profile = local_profile(app, user_id)?;
    let mut out = Map::new();
    if let Some(name) = profile.displayname {
        out.insert("displayname".into(), Value::String(name));
    }
    if let Some(url) = profile.avatar_url {
        out.insert("avatar_url".into(), Value::String(url));
    }
    Ok(out)
}

/// GET /_matrix/client/v3/profile/{userId}
///
/// Fields the user has not set are left out; a known user with none is `{}`.
pub fn get_profile(app: &App, req: &Request) -> Result<Response> {
    Response::ok(Value::Object(profile_of(app, req)?))
}

/// One profile field, or 404 if the user or the field is not there.
fn get_field(app: &App, req: &Request, field: &str) -> Result<Response> {
    let mut profile = profile_of(app, req)?;
    match profile.remove(field) {
        Some(v) => Response::ok(json!({ field: v })),
        None => Err(Error::not_found(format!("{} has no {field}", req.param("userId")))),
    }
}

/// GET /_matrix/client/v3/profile/{userId}/displayname
pub fn get_displayname(app: &App, req: &Request) -> Result<Response> {
    get_field(app, req, "displayname")
}

/// GET /_matrix/client/v3/profile/{userId}/avatar_url
pub fn get_avatar_url(app: &App, req: &Request) -> Result<Response> {
    get_field(app, req, "avatar_url")
}

/// The requester, who may only change their own profile. A user of
/// another server is a 404 here, as before federation: this server holds
/// no profile of theirs to change.
fn own_profile<'a>(app: &App, req: &'a Request) -> Result<&'a str> {
    let who = req.user()?;
    let (user_id, server) = user_param(req)?;
    if server != app.config.server_name {
        return Err(Error::not_found(format!("{user_id} is not a user of this server")));
    }
    if user_id != who.user_id {
        return Err(Error::forbidden("You may only change your own profile"));
    }
    Ok(user_id)
}

/// The body's `field`: a string, or null/empty to clear it.
fn field_value(req: &Request, field: &str) -> Result<Option<String>> {
    let body = req.json_value()?;
    let Some(obj) = body.as_object() else {
        return Err(Error::bad_json("The body must be a JSON object"));
    };
    match obj.get(field) {
        None => Err(Error::missing_param(format!("{field} is required"))),
        Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(Error::bad_json(format!("{field} must be a string"))),
    }
}

/// True for `mxc://<server-name>/<media-id>`, media IDs being `[A-Za-z0-9_-]+`.
fn is_mxc_uri(s: &str) -> bool {
    let Some((server, media_id)) = s.strip_prefix("mxc://").and_then(|r| r.split_once('/')) else {
        return false;
    };
    ids::is_valid_server_name(server)
        && !media_id.is_empty()
        && media_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// PUT /_matrix/client/v3/profile/{userId}/displayname
pub fn set_displayname(app: &App, req: &Request) -> Result<Response> {
    let user_id = own_profile(app, req)?;
    let name = field_value(req, "displayname")?;
    if let Some(n) = &name {
        if n.chars().count() > DISPLAYNAME_MAX_CHARS {
            return Err(Error::invalid_param(format!(
                "A display name may have at most {DISPLAYNAME_MAX_CHARS} characters"
            )));
        }
    }
    app.db.write(|c| {
        profiles::set_displayname(c, user_id, name.as_deref())?;
        update_member_events(app, c, user_id)
    })?;
    Response::ok(json!({}))
}

/// PUT /_matrix/client/v3/profile/{userId}/avatar_url
pub fn set_avatar_url(app: &App, req: &Request) -> Result<Response> {
    let user_id = own_profile(app, req)?;
    let url = field_value(req, "avatar_url")?;
    if let Some(u) = &url {
        if u.len() > AVATAR_URL_MAX_BYTES || !is_mxc_uri(u) {
            return Err(Error::invalid_param(format!(
                "avatar_url must be an mxc:// URI of at most {AVATAR_URL_MAX_BYTES} bytes"
            )));
        }
    }
    app.db.write(|c| {
        profiles::set_avatar_url(c, user_id, url.as_deref())?;
        update_member_events(app, c, user_id)
    })?;
    Response::ok(json!({}))
}

/// Sends a join event carrying the user's current profile into each room
/// they are joined to whose member event shows something else. A room
/// whose rules refuse the event (nothing is stored then) is skipped, so one
/// odd room does not block a profile change.
fn update_member_events(app: &App, conn: &crate::storage::Tx, user_id: &str) -> Result<()> {
    let profile = profiles::get(conn, user_id)?.unwrap_or_default();
    for room_id in state::rooms_of_user(conn, user_id, "join")? {
        // A member event that cannot be read (logged) is skipped like an
        // odd room: its content cannot be carried over.
        let Some(pdu) = rooms::current_readable_state_event(conn, &room_id, "m.room.member", user_id)? else {
            continue;
        };
        let mut content = pdu.get("content").and_then(Value::as_object).cloned().unwrap_or_default();
        if content.get("membership").and_then(Value::as_str) != Some("join") {
            continue;
        }
        let same =
            |key: &str, want: &Option<String>| content.get(key).and_then(Value::as_str) == want.as_deref();
        if same("displayname", &profile.displayname) && same("avatar_url", &profile.avatar_url) {
            continue;
        }
        // The reason of the original join does not describe this change.
        content.remove("reason");
        for (key, value) in [("displayname", &profile.displayname), ("avatar_url", &profile.avatar_url)] {
            match value {
                Some(v) => content.insert(key.into(), Value::String(v.clone())),
                None => content.remove(key),
            };
        }
        let new = NewEvent {
            kind: "m.room.member",
            state_key: Some(user_id),
            content: Value::Object(content),
            redacts: None,
            txn: None,
        };
        match rooms::append(app, conn, &room_id, user_id, new) {
            Ok(_) => {}
            Err(e) if !e.is_server_failure() => {
                log::warn(format_args!("profile change of {user_id} not sent to {room_id}: {e}"));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[derive(Deserialize)]
struct SearchBody {
    search_term: Option<String>,
    limit: Option<i64>,
}

/// How well an entry matches the search words: lower is better.
/// `None` if some word occurs in neither the user ID nor the display name.
fn match_rank(words: &[String], entry: &profiles::DirectoryEntry) -> Option<u8> {
    let id = entry.user_id.to_lowercase();
    let localpart = id.strip_prefix('@').and_then(|r| r.split(':').next()).unwrap_or("");
    let name = entry.profile.displayname.as_deref().unwrap_or("").to_lowercase();
    if !words.iter().all(|w| id.contains(w.as_str()) || name.contains(w.as_str())) {
        return None;
    }
    if words.is_empty() {
        return Some(2);
    }
    let term = words.join(" ");
    if name == term || localpart == term {
        return Some(0);
    }
    let word_starts = |hay: &str| {
        words.iter().all(|w| {
            hay.split(|c: char| !c.is_alphanumeric()).any(|part| part.starts_with(w.as_str()))
                || hay.starts_with(w.as_str())
        })
    };
    if word_starts(&name) || word_starts(localpart) {
        return Some(1);
    }
    Some(2)
}

/// POST /_matrix/client/v3/user_directory/search
///
/// Case-insensitive: every word of the term must occur in the user ID or
/// the display name. Results come by rank (exact, then word prefix, then
/// substring), then users with a display name first, then by user ID.
pub fn user_directory_search(app: &App, req: &Request) -> Result<Response> {
    let who = req.user()?;
    let body: SearchBody = req.json()?;
    let term = body.search_term.ok_or_else(|| Error::missing_param("search_term is required"))?;
    if term.len() > SEARCH_TERM_MAX_BYTES {
        return Err(Error::invalid_param(format!(
            "search_term may be at most {SEARCH_TERM_MAX_BYTES} bytes"
        )));
    }
    let limit = match body.limit {
        None => SEARCH_LIMIT_DEFAULT,
        Some(n) => usize::try_from(n.max(0)).unwrap_or(0).min(SEARCH_LIMIT_MAX),
    };
    let words: Vec<String> = term.to_lowercase().split_whitespace().map(str::to_owned).collect();
    let all_local = app.config.user_directory_search_all_users;
    let candidates =
        app.db.read(|c| profiles::directory_candidates(c, &who.user_id, all_local, SEARCH_SCAN_MAX))?;
    let mut ranked: Vec<(u8, bool, profiles::DirectoryEntry)> = candidates
        .into_iter()
        .filter_map(|e| match_rank(&words, &e).map(|r| (r, e.profile.displayname.is_none(), e)))
        .collect();
    ranked.sort_by(|a, b| (a.0, a.1, &a.2.user_id).cmp(&(b.0, b.1, &b.2.user_id)));
    let limited = ranked.len() > limit;
    let results: Vec<Value> = ranked
        .into_iter()
        .take(limit)
        .map(|(_, _, e)| {
            let mut user = json!({ "user_id": e.user_id });
            if let Some(name) = e.profile.displayname {
                user["display_name"] = Value::String(name);
            }
            if let Some(url) = e.profile.avatar_url {
                user["avatar_url"] = Value::String(url);
            }
            user
        })
        .collect();
    Response::ok(json!({ "results": results, "limited": limited }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(user_id: &str, name: Option<&str>) -> profiles::DirectoryEntry {
        profiles::DirectoryEntry {
            user_id: user_id.into(),
            profile: profiles::Profile { displayname: name.map(str::to_owned), avatar_url: None },
        }
    }

    fn words(term: &str) -> Vec<String> {
        term.to_lowercase().split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn mxc_uris() {
        assert!(is_mxc_uri("mxc://example.org/abc_DEF-123"));
        assert!(is_mxc_uri("mxc://localhost:8448/x"));
        assert!(!is_mxc_uri("https://example.org/a.png"));
        assert!(!is_mxc_uri("mxc://example.org/"));
        assert!(!is_mxc_uri("mxc://example.org"));
        assert!(!is_mxc_uri("mxc:///abc"));
        assert!(!is_mxc_uri("mxc://example.org/a/b"));
    }

    #[test]
    fn matching_is_case_insensitive_on_id_and_name() {
        let alice = entry("@alice:hearth.test", Some("Alice Liddell"));
        assert_eq!(match_rank(&words("ALICE"), &alice), Some(0));
        assert_eq!(match_rank(&words("lid"), &alice), Some(1));
        assert_eq!(match_rank(&words("dell"), &alice), Some(2));
        assert_eq!(match_rank(&words("hearth.test"), &alice), Some(2));
        assert_eq!(match_rank(&words("alice bob"), &alice), None);
        let emile = entry("@e:hearth.test", Some("ÉMILE"));
        assert_eq!(match_rank(&words("émile"), &emile), Some(0));
        assert_eq!(match_rank(&words(""), &emile), Some(2));
    }
}
