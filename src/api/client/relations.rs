//! Event relationships and threads: `/relations` and `/threads`.
//!
//! Relations are read from `event_relations` (written with each event,
//! cleared by redaction: `storage::relations`), in the room's topological
//! order with the same pagination points as `/messages`
//! (`rooms::token::Point`), so a `/messages` or `/sync` token works here
//! too. Every event listed passes the reader's history visibility and
//! ignore list, and comes with its bundled aggregations
//! (`rooms::format::client_event`).
//!
//! Threads are listed by latest activity from `threads` (a root's newest
//! reply's position), newest first.

use serde_json::{json, Value};

use crate::api::client::message::{
    check_may_read, event_id_param, event_type_param, limit_query, parse_point, room_param, scan_source,
    viewer, visible_event, Source,
};
use crate::api::{Request, Response};
use crate::app::App;
use crate::error::{Error, Result};
use crate::rooms::format;
use crate::rooms::token::{self, Point};
use crate::rooms::visibility::Visibility;
use crate::storage::events::{self, Dir, StoredEvent};
use crate::storage::{self, account_data, relations};

/// Events per page of `/relations` unless the client asks otherwise (as
/// Synapse).
const RELATIONS_LIMIT_DEFAULT: usize = 5;
/// How many levels of relations `recurse=true` follows: the spec asks
/// for at least three.
const RECURSE_DEPTH: usize = 3;
/// Most events whose children one recursive read looks for.
const RECURSE_PARENTS_MAX: usize = 1000;
/// Threads per page of `/threads` unless the client asks otherwise.
const THREADS_LIMIT_DEFAULT: usize = 5;
/// Most threads one `/threads` page holds.
const THREADS_LIMIT_MAX: usize = 100;
/// Most threads one `/threads` page looks at to fill itself (roots the
/// reader may not see are passed over).
const THREADS_SCAN_MAX: usize = 1000;
/// Longest relation type in a path.
const REL_TYPE_MAX_BYTES: usize = 255;

/// GET /_matrix/client/v1/rooms/{roomId}/relations/{eventId}
/// [/{relType}[/{eventType}]]?from&to&limit&dir&recurse
///
/// The parent must be an event the reader may see (else 404); someone
/// with no membership of the room at all is refused (403), as `/messages`
/// refuses them.
pub fn relations(app: &App, req: &Request) -> Result<Response> {
    let who = req.user()?;
    let room_id = room_param(req)?;
    let parent_id = event_id_param(req)?;
    let rel_type = match req.param_opt("relType") {
        Some(t) if t.is_empty() || t.len() > REL_TYPE_MAX_BYTES => {
            return Err(Error::invalid_param("Invalid relation type"))
        }
        other => other,
    };
    let event_type = match req.param_opt("eventType") {
        Some(_) => Some(event_type_param(req)?),
        None => None,
    };
    let dir = match req.query("dir") {
        None | Some("b") => Dir::Backward,
        Some("f") => Dir::Forward,
        Some(_) => return Err(Error::invalid_param("dir must be 'b' or 'f'")),
    };
    let recurse = match req.query("recurse") {
        None => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(_) => return Err(Error::invalid_param("recurse must be true or false")),
    };
    let from = req.query("from").map(parse_point).transpose()?;
    let to = req.query("to").map(parse_point).transpose()?;
    let limit = limit_query(req)?.unwrap_or(RELATIONS_LIMIT_DEFAULT);
    app.db.read(|conn| {
        check_may_read(conn, room_id, &who.user_id)?;
        visible_event(conn, room_id, parent_id, &who.user_id)?;
        let mut parents = vec![parent_id.to_owned()];
        if recurse == Some(true) {
            let mut level = parents.clone();
            for _ in 1..RECURSE_DEPTH {
                if level.is_empty() || parents.len() >= RECURSE_PARENTS_MAX {
                    break;
                }
                let room = RECURSE_PARENTS_MAX - parents.len();
                level = relations::children_of_any(conn, &json!(level).to_string(), room)?;
                parents.extend(level.iter().cloned());
            }
        }
        let parents = json!(parents).to_string();
        let from_point = match (from, dir) {
            (Some(p), _) => p,
            (None, Dir::Backward) => Point::stream(events::current_pos(conn)?),
            (None, Dir::Forward) => Point::START,
        };
        let ignored = account_data::ignored_users(conn, &who.user_id)?;
        let mut vis = Visibility::new(conn, &who.user_id, room_id);
        let mut keep = |e: &StoredEvent| -> Result<bool> {
            Ok(e.room_id == room_id
                && !account_data::hides(&ignored, &e.sender, e.state_key.is_some())
                && vis.may_see(e)?)
        };
        let filter = relations::ChildFilter { parents: &parents, rel_type, event_type };
        let page = scan_source(conn, Source::Children(filter), from_point, to, dir, limit, &mut keep)?;
        let chunk = format::client_events(conn, &page.events, Some(viewer(who)), storage::now_ms())?;
        let mut out = json!({ "chunk": chunk });
        if !page.exhausted {
            out["next_batch"] = json!(page.point.token());
        }
        if let Some(t) = req.query("from") {
            out["prev_batch"] = json!(t);
        }
        if let Some(r) = recurse {
            out["recursion_depth"] = json!(if r { RECURSE_DEPTH } else { 1 });
        }
        Response::ok(out)
    })
}

/// GET /_matrix/client/v1/rooms/{roomId}/threads?include&from&limit
///
/// The room's thread roots the reader may see, by latest activity, newest
/// first; `include=participated` keeps the threads they started or replied
/// in. `next_batch` is the point below the last thread's latest reply.
pub fn threads(app: &App, req: &Request) -> Result<Response> {
    let who = req.user()?;
    let room_id = room_param(req)?;
    let participated = match req.query("include") {
        None | Some("all") => false,
        Some("participated") => true,
        Some(_) => return Err(Error::invalid_param("include must be 'all' or 'participated'")),
    };
    let before = match req.query("from") {
        None => i64::MAX,
        Some(t) => token::parse(t).ok_or_else(|| Error::invalid_param("Invalid pagination token"))?,
    };
    let limit = limit_query(req)?.unwrap_or(THREADS_LIMIT_DEFAULT).clamp(1, THREADS_LIMIT_MAX);
    app.db.read(|conn| {
        check_may_read(conn, room_id, &who.user_id)?;
        let participant = participated.then_some(who.user_id.as_str());
        let ignored = account_data::ignored_users(conn, &who.user_id)?;
        let mut vis = Visibility::new(conn, &who.user_id, room_id);
        let mut roots = Vec::new();
        let mut cursor = before;
        let mut scanned = 0;
        let mut exhausted = false;
        while roots.len() < limit && scanned < THREADS_SCAN_MAX {
            let want = (limit - roots.len() + 1).min(THREADS_SCAN_MAX - scanned);
            let page = relations::threads_page(conn, room_id, cursor, participant, want)?;
            let got = page.len();
            let mut used = 0;
            for (root_id, latest) in page {
                if roots.len() == limit {
                    break;
                }
                used += 1;
                scanned += 1;
                cursor = latest;
                let Some(root) = events::get(conn, &root_id)?.filter(|e| e.room_id == room_id) else {
                    continue;
                };
                if !account_data::hides(&ignored, &root.sender, false) && vis.may_see(&root)? {
                    roots.push(root);
                }
            }
            if got < want && used == got {
                exhausted = true;
                break;
            }
        }
        let chunk: Vec<Value> = format::client_events(conn, &roots, Some(viewer(who)), storage::now_ms())?;
        let mut out = json!({ "chunk": chunk });
        if !exhausted {
            out["next_batch"] = json!(token::at(cursor));
        }
        Response::ok(out)
    })
}
