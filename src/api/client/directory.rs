//! Room aliases and the published room directory: `/directory/room/{alias}`,
//! `/rooms/{roomId}/aliases`, `/directory/list/room/{roomId}` and
//! `/publicRooms`.
//!
//! Aliases live in `room_aliases` and only this server's aliases can be
//! made or removed; another server's alias is resolved by asking that
//! server (`/query/directory`, `federation::queries::alias`), and another
//! server's directory is listed by asking it (`/publicRooms`, GET or POST
//! as the client asked). The directory is the rooms marked `published`,
//! ordered by `(created_ts, room_id)`; pagination tokens name a position
//! in that order, never an offset, so pages stay free of duplicates while
//! rooms come and go. The federation API serves the same listing
//! ([`Listing`], [`local_directory`]; `api::federation::public_rooms`).

use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::api::{Auth, Request, Response};
use crate::app::App;
use crate::core::ids::{is_valid_room_id, is_valid_server_name, parse_room_alias};
use crate::crypto;
use crate::error::{Error, ErrorKind, Result};
use crate::federation::queries;
use crate::rooms::{self, visibility, NewEvent};
use crate::storage::{self, state};

/// Most rooms one `/publicRooms` page holds, and the page size when the
/// client names none.
const PUBLIC_ROOMS_LIMIT_MAX: usize = 100;
/// Longest `generic_search_term` accepted, in bytes.
const SEARCH_TERM_MAX_BYTES: usize = 1024;
/// Most entries of `filter.room_types`.
const ROOM_TYPES_MAX: usize = 64;

/// The alias in the path, which must be a valid alias of this server.
fn local_alias<'a>(app: &App, req: &'a Request) -> Result<&'a str> {
    let alias = req.param("roomAlias");
    let (_, server) = parse_room_alias(alias)
        .ok_or_else(|| Error::invalid_param(format!("{alias} is not a valid room alias")))?;
    if server != app.config.server_name {
        return Err(Error::invalid_param(format!(
            "{alias} is not an alias of this server ({})",
            app.config.server_name
        )));
    }
    Ok(alias)
}

/// The room ID in the path, checked for shape only.
fn room_id_param(req: &Request) -> Result<&str> {
    let room_id = req.param("roomId");
    if !is_valid_room_id(room_id) {
        return Err(Error::invalid_param(format!("{room_id} is not a valid room ID")));
    }
    Ok(room_id)
}

fn alias_not_found(alias: &str) -> Error {
    Error::not_found(format!("Room alias {alias} not found"))
}

fn is_joined(conn: &rusqlite::Connection, user_id: &str, room_id: &str) -> Result<bool> {
    Ok(state::membership(conn, user_id, room_id)?.as_deref() == Some("join"))
}

/// True if the user is joined to the room and may send
/// `m.room.canonical_alias`: the permission that governs a room's aliases
/// and its directory entry.
fn may_manage_aliases(conn: &rusqlite::Connection, user_id: &str, room_id: &str) -> Result<bool> {
    if !is_joined(conn, user_id, room_id)? {
        return Ok(false);
    }
    let (_, version) = rooms::room_and_version(conn, room_id)?;
    let (levels, creators) = rooms::current_power(conn, room_id, version)?;
    let needed = levels.event_level("m.room.canonical_alias", true);
    Ok(levels.user_level(user_id, &creators).at_least(needed))
}

#[derive(Deserialize)]
struct PutAliasBody {
    room_id: String,
}

/// PUT /_matrix/client/v3/directory/room/{roomAlias}
pub fn put_alias(app: &App, req: &Request) -> Result<Response> {
    let who = req.user()?;
    let alias = local_alias(app, req)?;
    let body: PutAliasBody = req.json()?;
    if !is_valid_room_id(&body.room_id) {
        return Err(Error::invalid_param(format!("{} is not a valid room ID", body.room_id)));
    }
    app.db.write(|conn| {
        if storage::rooms::get(conn, &body.room_id)?.is_none() {
            return Err(Error::not_found("Unknown room"));
        }
        if !is_joined(conn, &who.user_id, &body.room_id)? {
            return Err(Error::forbidden("You must be joined to a room to give it an alias"));
        }
        if !storage::rooms::put_alias(conn, alias, &body.room_id, &who.user_id, storage::now_ms())? {
            return Err(Error::new(ErrorKind::Conflict, format!("Room alias {alias} already exists")));
        }
        Ok(())
    })?;
    Response::ok(json!({}))
}

/// GET /_matrix/client/v3/directory/room/{roomAlias}
///
/// An alias of another server is asked of that server; its 404 is ours.
pub fn get_alias(app: &App, req: &Request) -> Result<Response> {
    let alias = req.param("roomAlias");
    let (_, server) = parse_room_alias(alias)
        .ok_or_else(|| Error::invalid_param(format!("{alias} is not a valid room alias")))?;
    if server != app.config.server_name {
        let (room_id, servers) = queries::alias(app, alias, server)?;
        return Response::ok(json!({ "room_id": room_id, "servers": servers }));
    }
    let (room_id, servers) = local_alias_servers(app, alias)?.ok_or_else(|| alias_not_found(alias))?;
    Response::ok(json!({ "room_id": room_id, "servers": servers }))
}

/// Most servers listed for a local alias.
const ALIAS_SERVERS_MAX: usize = 64;

/// The room a local alias names and the servers likely to hold it: this
/// one first, then those of the room's other joined members (at most
/// [`ALIAS_SERVERS_MAX`]). Also what `/query/directory` answers.
pub fn local_alias_servers(app: &App, alias: &str) -> Result<Option<(String, Vec<String>)>> {
    app.db.read(|tx| {
        let Some((room_id, _)) = storage::rooms::get_alias(tx, alias)? else { return Ok(None) };
        let mut servers = vec![app.config.server_name.clone()];
        for member in state::members(tx, &room_id, "join")? {
            if servers.len() == ALIAS_SERVERS_MAX {
                break;
            }
            if let Some((_, server)) = crate::core::ids::parse_user_id(&member) {
                if !servers.iter().any(|s| s == server) {
                    servers.push(server.to_owned());
                }
            }
        }
        Ok(Some((room_id, servers)))
    })
}

/// DELETE /_matrix/client/v3/directory/room/{roomAlias}
///
/// Allowed for the alias's creator, a server admin, or a member who may
/// send `m.room.canonical_alias`. If the room's canonical alias event names
/// the alias and the requester may change that event, the alias is taken
/// out of it as well; otherwise the event is left as it is.
pub fn delete_alias(app: &App, req: &Request) -> Result<Response> {
    let who = req.user()?;
    let alias = req.param("roomAlias");
    let (_, server) = parse_room_alias(alias)
        .ok_or_else(|| Error::invalid_param(format!("{alias} is not a valid room alias")))?;
    if server != app.config.server_name {
        return Err(alias_not_found(alias));
    }
    app.db.write(|conn| {
        let (room_id, creator) =
            storage::rooms::get_alias(conn, alias)?.ok_or_else(|| alias_not_found(alias))?;
        let room_known = storage::rooms::get(conn, &room_id)?.is_some();
        let allowed = creator == who.user_id
            || who.is_admin
            || (room_known && may_manage_aliases(conn, &who.user_id, &room_id)?);
        if !allowed {
            return Err(Error::forbidden(
                "Only the alias's creator, a server admin, or a room member allowed to change \
                 the room's canonical alias may delete it",
            ));
        }
        storage::rooms::delete_alias(conn, alias)?;
        if room_known {
            drop_from_canonical_alias(app, conn, &room_id, alias, who)?;
        }
        Ok(())
    })?;
    Response::ok(json!({}))
}

/// Takes a deleted alias out of the room's `m.room.canonical_alias` event,
/// sent as the requester, when the event names it and the requester may
/// send it. Anything else leaves the event as it is: the alias is deleted
/// either way, as the spec recommends.
fn drop_from_canonical_alias(
    app: &App,
    conn: &crate::storage::Tx,
    room_id: &str,
    alias: &str,
    who: &Auth,
) -> Result<()> {
    let Some(event) = rooms::current_readable_state_event(conn, room_id, "m.room.canonical_alias", "")?
    else {
        return Ok(());
    };
    let Some(mut content) = event.get("content").and_then(Value::as_object).cloned() else {
        return Ok(());
    };
    let mut changed = false;
    if content.get("alias").and_then(Value::as_str) == Some(alias) {
        content.remove("alias");
        changed = true;
    }
    if let Some(Value::Array(alt)) = content.get_mut("alt_aliases") {
        let before = alt.len();
        alt.retain(|a| a.as_str() != Some(alias));
        changed |= alt.len() != before;
        if alt.is_empty() {
            content.remove("alt_aliases");
        }
    }
    if !changed || !may_manage_aliases(conn, &who.user_id, room_id)? {
        return Ok(());
    }
    let new = NewEvent {
        kind: "m.room.canonical_alias",
        state_key: Some(""),
        content: Value::Object(content),
        redacts: None,
        txn: None,
    };
    match rooms::append(app, conn, room_id, &who.user_id, new) {
        Ok(_) => Ok(()),
        // A database failure aborts the request; a refused event (say, the
        // event names another alias that no longer points here) stores
        // nothing, so the deletion stands on its own.
        Err(e) if e.is_server_failure() => Err(e),
        Err(e) => {
            crate::log::info(format_args!("canonical alias of {room_id} left unchanged: {e}"));
            Ok(())
        }
    }
}

/// GET /_matrix/client/v3/rooms/{roomId}/aliases
///
/// Members, anyone when the room is world readable, and server admins. An
/// unknown room answers like a room the requester is not in (403), except
/// to admins (404).
pub fn room_aliases(app: &App, req: &Request) -> Result<Response> {
    let who = req.user()?;
    let room_id = room_id_param(req)?;
    let aliases = app.db.read(|tx| {
        let known = storage::rooms::get(tx, room_id)?.is_some();
        if !known && who.is_admin {
            return Err(Error::not_found("Unknown room"));
        }
        let allowed = known
            && (who.is_admin
                || is_joined(tx, &who.user_id, room_id)?
                || visibility::world_readable(tx, room_id)?);
        if !allowed {
            return Err(Error::forbidden("You are not a member of the room"));
        }
        storage::rooms::aliases_of(tx, room_id)
    })?;
    Response::ok(json!({ "aliases": aliases }))
}

/// GET /_matrix/client/v3/directory/list/room/{roomId}
pub fn get_visibility(app: &App, req: &Request) -> Result<Response> {
    let room_id = room_id_param(req)?;
    let room = app
        .db
        .read(|tx| storage::rooms::get(tx, room_id))?
        .ok_or_else(|| Error::not_found("Room not found"))?;
    Response::ok(json!({ "visibility": if room.published { "public" } else { "private" } }))
}

#[derive(Deserialize)]
struct VisibilityBody {
    visibility: Option<String>,
}

/// PUT /_matrix/client/v3/directory/list/room/{roomId}
///
/// Allowed for server admins and for members who may send
/// `m.room.canonical_alias`.
pub fn set_visibility(app: &App, req: &Request) -> Result<Response> {
    let who = req.user()?;
    let room_id = room_id_param(req)?;
    let body: VisibilityBody = req.json()?;
    // The spec: the visibility defaults to `public`.
    let publish = match body.visibility.as_deref() {
        None | Some("public") => true,
        Some("private") => false,
        Some(other) => {
            return Err(Error::invalid_param(format!(
                "Unknown visibility {other:?}: use \"public\" or \"private\""
            )))
        }
    };
    app.db.write(|conn| {
        if storage::rooms::get(conn, room_id)?.is_none() {
            return Err(Error::not_found("Room not found"));
        }
        if !who.is_admin && !may_manage_aliases(conn, &who.user_id, room_id)? {
            return Err(Error::forbidden(
                "Only room members allowed to change the room's canonical alias, or server admins, \
                 may change its directory visibility",
            ));
        }
        storage::rooms::set_published(conn, room_id, publish)?;
        Ok(())
    })?;
    Response::ok(json!({}))
}

/// Which rooms a directory listing asks for, and where to start.
struct Query {
    limit: usize,
    since: Option<Token>,
    search: Option<String>,
    /// `None`: any room type; else the accepted types, `None` within being
    /// "no type".
    room_types: Option<Vec<Option<String>>>,
    /// A third-party network was asked for: this server bridges none.
    third_party: bool,
}

/// A `/publicRooms` request as given, checked for shape and bounds: what
/// the client API (GET, POST) and the federation API (GET, POST) ask,
/// listed here ([`local_directory`]) or passed on to another server.
#[derive(Debug, Default)]
pub struct Listing {
    pub limit: Option<i64>,
    /// A pagination token: ours, or the other server's when passed on.
    pub since: Option<String>,
    /// `filter.generic_search_term`, trimmed; `None` when empty.
    pub search: Option<String>,
    /// `filter.room_types`; `None` when absent or empty.
    pub room_types: Option<Vec<Option<String>>>,
    pub include_all_networks: bool,
    pub third_party_instance_id: Option<String>,
}

#[derive(Deserialize)]
struct PublicRoomsBody {
    limit: Option<i64>,
    since: Option<String>,
    filter: Option<FilterBody>,
    #[serde(default)]
    include_all_networks: bool,
    third_party_instance_id: Option<String>,
}

#[derive(Deserialize)]
struct FilterBody {
    generic_search_term: Option<String>,
    room_types: Option<Vec<Option<String>>>,
}

impl Listing {
    /// From a GET's query string: `limit`, `since`, and (the federation
    /// API's) `include_all_networks` and `third_party_instance_id`.
    pub fn from_query(req: &Request) -> Result<Listing> {
        let limit = match req.query("limit") {
            None => None,
            Some(text) => Some(
                text.parse::<i64>()
                    .map_err(|_| Error::invalid_param(format!("limit must be an integer, not {text:?}")))?,
            ),
        };
        let include_all_networks = match req.query("include_all_networks") {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => {
                return Err(Error::invalid_param(format!(
                    "include_all_networks must be true or false, not {other:?}"
                )))
            }
        };
        Listing {
            limit,
            since: req.query("since").map(str::to_owned),
            search: None,
            room_types: None,
            include_all_networks,
            third_party_instance_id: req.query("third_party_instance_id").map(str::to_owned),
        }
        .checked()
    }

    /// From a POST's body.
    pub fn from_body(req: &Request) -> Result<Listing> {
        let body: PublicRoomsBody = req.json()?;
        let filter = body.filter.unwrap_or(FilterBody { generic_search_term: None, room_types: None });
        Listing {
            limit: body.limit,
            since: body.since,
            search: filter.generic_search_term.map(|t| t.trim().to_owned()).filter(|t| !t.is_empty()),
            // An empty list filters nothing, as if it were absent.
            room_types: filter.room_types.filter(|t| !t.is_empty()),
            include_all_networks: body.include_all_networks,
            third_party_instance_id: body.third_party_instance_id,
        }
        .checked()
    }

    fn checked(self) -> Result<Listing> {
        if self.include_all_networks && self.third_party_instance_id.is_some() {
            return Err(Error::invalid_param(
                "third_party_instance_id can only be used when include_all_networks is false",
            ));
        }
        if self.search.as_ref().is_some_and(|t| t.len() > SEARCH_TERM_MAX_BYTES) {
            return Err(Error::invalid_param(format!(
                "generic_search_term is longer than {SEARCH_TERM_MAX_BYTES} bytes"
            )));
        }
        if self.room_types.as_ref().is_some_and(|t| t.len() > ROOM_TYPES_MAX) {
            return Err(Error::invalid_param(format!("room_types lists more than {ROOM_TYPES_MAX} types")));
        }
        if self.since.as_ref().is_some_and(|t| t.len() > queries::TOKEN_MAX_BYTES) {
            return Err(Error::invalid_param("Invalid pagination token"));
        }
        Ok(self)
    }

    /// The page size: [`PUBLIC_ROOMS_LIMIT_MAX`] when none is named, else
    /// the one named within `1..=PUBLIC_ROOMS_LIMIT_MAX`.
    pub fn page_size(&self) -> usize {
        clamp_limit(self.limit)
    }

    /// The federation API's POST body asking the same.
    fn federation_body(&self) -> Value {
        let mut body =
            json!({ "limit": self.page_size(), "include_all_networks": self.include_all_networks });
        if let Some(s) = &self.since {
            body["since"] = json!(s);
        }
        let mut filter = Map::new();
        if let Some(t) = &self.search {
            filter.insert("generic_search_term".into(), json!(t));
        }
        if let Some(t) = &self.room_types {
            filter.insert("room_types".into(), json!(t));
        }
        if !filter.is_empty() {
            body["filter"] = Value::Object(filter);
        }
        if let Some(id) = &self.third_party_instance_id {
            body["third_party_instance_id"] = json!(id);
        }
        body
    }
}

/// One page of this server's published room directory.
pub fn local_directory(app: &App, listing: &Listing) -> Result<Value> {
    let query = Query {
        limit: listing.page_size(),
        since: listing.since.as_deref().map(Token::parse).transpose()?,
        search: listing.search.as_ref().map(|t| t.to_lowercase()),
        room_types: listing.room_types.clone(),
        third_party: listing.third_party_instance_id.is_some(),
    };
    list_public_rooms(app, &query)
}

/// GET /_matrix/client/v3/publicRooms
///
/// Listing another server's directory needs an access token (as in
/// Synapse: this server would make the request for anyone).
pub fn public_rooms(app: &App, req: &Request) -> Result<Response> {
    let listing = Listing::from_query(req)?;
    match remote_server(app, req)? {
        None => Response::ok(local_directory(app, &listing)?),
        Some(server) => {
            req.user()?;
            let page =
                queries::public_rooms(app, server, None, listing.page_size(), listing.since.as_deref())?;
            Response::ok(page)
        }
    }
}

/// POST /_matrix/client/v3/publicRooms
pub fn public_rooms_filtered(app: &App, req: &Request) -> Result<Response> {
    let server = remote_server(app, req)?;
    let listing = Listing::from_body(req)?;
    match server {
        None => Response::ok(local_directory(app, &listing)?),
        Some(server) => {
            let body = listing.federation_body();
            let page = queries::public_rooms(app, server, Some(&body), listing.page_size(), None)?;
            Response::ok(page)
        }
    }
}

/// `?server=`: `None` for this server (or none named), else the other
/// server whose directory is asked for.
fn remote_server<'a>(app: &App, req: &'a Request) -> Result<Option<&'a str>> {
    match req.query("server") {
        None => Ok(None),
        Some(s) if s == app.config.server_name => Ok(None),
        Some(s) if !is_valid_server_name(s) => {
            Err(Error::invalid_param(format!("{s:?} is not a valid server name")))
        }
        Some(s) => Ok(Some(s)),
    }
}

fn clamp_limit(limit: Option<i64>) -> usize {
    match limit {
        None => PUBLIC_ROOMS_LIMIT_MAX,
        Some(n) => n.clamp(1, PUBLIC_ROOMS_LIMIT_MAX as i64) as usize,
    }
}

/// A position in the directory order, and which way to read from it.
#[derive(Debug, Clone, PartialEq)]
enum Token {
    /// The rooms after this key.
    After(i64, String),
    /// The rooms before this key.
    Before(i64, String),
}

impl Token {
    /// `n` (next) or `p` (previous), the creation time, `.`, and the room
    /// ID in URL-safe base64 so the token needs no escaping in a query.
    fn render(&self) -> String {
        let (dir, ts, room_id) = match self {
            Token::After(ts, id) => ('n', ts, id),
            Token::Before(ts, id) => ('p', ts, id),
        };
        format!("{dir}{ts}.{}", crypto::b64url_encode(room_id.as_bytes()))
    }

    fn parse(s: &str) -> Result<Token> {
        let bad = || Error::invalid_param("Invalid pagination token");
        let (dir, rest) = s.split_at_checked(1).ok_or_else(bad)?;
        let (ts, id) = rest.split_once('.').ok_or_else(bad)?;
        let ts: i64 = ts.parse().map_err(|_| bad())?;
        let id = crypto::b64_decode(id).and_then(|b| String::from_utf8(b).ok()).ok_or_else(bad)?;
        if !is_valid_room_id(&id) {
            return Err(bad());
        }
        match dir {
            "n" => Ok(Token::After(ts, id)),
            "p" => Ok(Token::Before(ts, id)),
            _ => Err(bad()),
        }
    }
}

/// One room's directory entry and what a search looks at.
struct Entry {
    chunk: Map<String, Value>,
    /// Name, topic and aliases, lower-cased, for `generic_search_term`.
    haystack: String,
    room_type: Option<String>,
}

impl Entry {
    fn matches(&self, q: &Query) -> bool {
        let term_ok = q.search.as_ref().is_none_or(|t| self.haystack.contains(t.as_str()));
        let type_ok = q.room_types.as_ref().is_none_or(|types| types.contains(&self.room_type));
        term_ok && type_ok
    }
}

fn content_str<'a>(event: &'a Option<Value>, field: &str) -> Option<&'a str> {
    event.as_ref()?.get("content")?.get(field)?.as_str()
}

/// The plain-text topic: the `text/plain` representation of `m.topic` if
/// there is one, else the `topic` property; none when empty.
fn plain_topic(event: &Option<Value>) -> Option<String> {
    let content = event.as_ref()?.get("content")?;
    let blocks = content.pointer("/m.topic/m.text").and_then(Value::as_array);
    let from_blocks = blocks.into_iter().flatten().find_map(|b| {
        let mime = b.get("mimetype").and_then(Value::as_str).unwrap_or("text/plain");
        (mime == "text/plain").then(|| b.get("body").and_then(Value::as_str)).flatten()
    });
    let topic = from_blocks.or_else(|| content.get("topic").and_then(Value::as_str))?;
    (!topic.is_empty()).then(|| topic.to_owned())
}

/// A room's summary from its current state, as the directory lists it
/// (the spec's `PublishedRoomsChunk`): what `api::client::spaces` builds
/// its hierarchy entries on.
pub fn room_summary(conn: &rusqlite::Connection, room_id: &str) -> Result<Map<String, Value>> {
    Ok(entry(conn, room_id)?.chunk)
}

/// Builds a room's directory entry from its current state.
fn entry(conn: &rusqlite::Connection, room_id: &str) -> Result<Entry> {
    // A state event that cannot be read (logged) shows as absent.
    let ev = |kind: &str| rooms::current_readable_state_event(conn, room_id, kind, "");
    let create = ev("m.room.create")?;
    let name_ev = ev("m.room.name")?;
    let alias_ev = ev("m.room.canonical_alias")?;
    let avatar_ev = ev("m.room.avatar")?;
    let join_ev = ev("m.room.join_rules")?;
    let guest_ev = ev("m.room.guest_access")?;
    let joined = state::members(conn, room_id, "join")?.len();
    let mut chunk = Map::new();
    chunk.insert("room_id".into(), json!(room_id));
    chunk.insert("num_joined_members".into(), json!(joined));
    chunk.insert("world_readable".into(), json!(visibility::world_readable(conn, room_id)?));
    chunk.insert("guest_can_join".into(), json!(content_str(&guest_ev, "guest_access") == Some("can_join")));
    let mut haystack = String::new();
    if let Some(name) = content_str(&name_ev, "name").filter(|n| !n.is_empty()) {
        chunk.insert("name".into(), json!(name));
        haystack.push_str(name);
        haystack.push('\n');
    }
    if let Some(topic) = plain_topic(&ev("m.room.topic")?) {
        haystack.push_str(&topic);
        haystack.push('\n');
        chunk.insert("topic".into(), json!(topic));
    }
    if let Some(alias) = content_str(&alias_ev, "alias") {
        chunk.insert("canonical_alias".into(), json!(alias));
        haystack.push_str(alias);
        haystack.push('\n');
    }
    let alt = alias_ev.as_ref().and_then(|e| e.pointer("/content/alt_aliases")).and_then(Value::as_array);
    for a in alt.into_iter().flatten().filter_map(Value::as_str) {
        haystack.push_str(a);
        haystack.push('\n');
    }
    if let Some(url) = content_str(&avatar_ev, "url").filter(|u| !u.is_empty()) {
        chunk.insert("avatar_url".into(), json!(url));
    }
    if let Some(rule) = content_str(&join_ev, "join_rule") {
        chunk.insert("join_rule".into(), json!(rule));
    }
    let room_type = content_str(&create, "type").map(str::to_owned);
    if let Some(t) = &room_type {
        chunk.insert("room_type".into(), json!(t));
    }
    Ok(Entry { chunk, haystack: haystack.to_lowercase(), room_type })
}

/// One page of the directory. Without a search or type filter only the
/// page's rooms are looked at; with one, every published room is.
fn list_public_rooms(app: &App, q: &Query) -> Result<Value> {
    if q.third_party {
        return Ok(json!({ "chunk": [], "total_room_count_estimate": 0 }));
    }
    let filtered = q.search.is_some() || q.room_types.is_some();
    let page = app.db.read(|tx| {
        let keys = storage::rooms::published_keys(tx)?;
        // The candidates in order, with their entries when a filter needed them.
        let mut list: Vec<((i64, String), Option<Entry>)> = Vec::with_capacity(keys.len());
        for key in keys {
            if filtered {
                let e = entry(tx, &key.1)?;
                if e.matches(q) {
                    list.push((key, Some(e)));
                }
            } else {
                list.push((key, None));
            }
        }
        let total = list.len();
        // [start, end) of the page within the list.
        let (start, end) = match &q.since {
            None => (0, q.limit.min(total)),
            Some(Token::After(ts, id)) => {
                let start = list.partition_point(|(k, _)| (k.0, k.1.as_str()) <= (*ts, id.as_str()));
                (start, (start + q.limit).min(total))
            }
            Some(Token::Before(ts, id)) => {
                let end = list.partition_point(|(k, _)| (k.0, k.1.as_str()) < (*ts, id.as_str()));
                (end.saturating_sub(q.limit), end)
            }
        };
        let mut chunk = Vec::with_capacity(end - start);
        for ((_, room_id), e) in &mut list[start..end] {
            let e = match e.take() {
                Some(e) => e,
                None => entry(tx, room_id)?,
            };
            chunk.push(Value::Object(e.chunk));
        }
        let mut out = json!({ "chunk": chunk, "total_room_count_estimate": total });
        if start < end {
            if start > 0 {
                let (ts, id) = &list[start].0;
                out["prev_batch"] = json!(Token::Before(*ts, id.clone()).render());
            }
            if end < total {
                let (ts, id) = &list[end - 1].0;
                out["next_batch"] = json!(Token::After(*ts, id.clone()).render());
            }
        }
        Ok(out)
    })?;
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_garbage_is_refused() {
        for t in [Token::After(1_712_000_000_000, "!abc:localhost".into()), Token::Before(0, "!hash".into())]
        {
            let text = t.render();
            assert!(text.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)), "{text}");
            assert_eq!(Token::parse(&text), Ok(t));
        }
        for bad in ["", "n", "x1.IWE", "n1", "nx.IWE", "n1.!!!", "n1.YWJj", "pé.IWE", "é"] {
            let e = Token::parse(bad).unwrap_err();
            assert_eq!(e.errcode(), "M_INVALID_PARAM", "{bad}");
        }
    }

    #[test]
    fn topics_prefer_the_plain_text_block() {
        let ev = |c: Value| Some(json!({ "content": c }));
        assert_eq!(plain_topic(&ev(json!({ "topic": "plain" }))).as_deref(), Some("plain"));
        assert_eq!(plain_topic(&ev(json!({ "topic": "" }))), None);
        let rich = json!({ "topic": "fallback", "m.topic": { "m.text": [
            { "mimetype": "text/html", "body": "<b>x</b>" },
            { "body": "block" },
        ] } });
        assert_eq!(plain_topic(&ev(rich)).as_deref(), Some("block"));
        assert_eq!(plain_topic(&None), None);
    }

    #[test]
    fn limits_are_clamped() {
        assert_eq!(clamp_limit(None), PUBLIC_ROOMS_LIMIT_MAX);
        assert_eq!(clamp_limit(Some(0)), 1);
        assert_eq!(clamp_limit(Some(-5)), 1);
        assert_eq!(clamp_limit(Some(3)), 3);
        assert_eq!(clamp_limit(Some(i64::MAX)), PUBLIC_ROOMS_LIMIT_MAX);
    }
}
