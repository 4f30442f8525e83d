//! `/sync` and sync filters. The answer is computed by `sync::compute`; a
//! sync with nothing new waits in the hub until something the user may see
//! happens or its timeout passes.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::api::Waiter;
use crate::api::{parse_json, Poll, Request, Response};
use crate::app::App;
use crate::error::{Error, ErrorKind, Result};
use crate::log;
use crate::storage::account_data;
use crate::sync::{self, Since, SyncFilter};

/// Longest filter accepted, as JSON text.
const FILTER_JSON_MAX_BYTES: usize = 65536;

/// Reads the `filter` query parameter: inline JSON or a stored filter ID.
fn load_filter(app: &App, user_id: &str, param: Option<&str>) -> Result<SyncFilter> {
    let Some(text) = param else { return Ok(SyncFilter::default()) };
    if text.trim_start().starts_with('{') {
        if text.len() > FILTER_JSON_MAX_BYTES {
            return Err(Error::bad_json("The filter is too long"));
        }
        return sync::parse_filter(&parse_json(text.as_bytes(), "The filter")?);
    }
    let id: i64 = text.parse().map_err(|_| Error::invalid_param("filter is neither JSON nor a filter ID"))?;
    let stored =
        stored_filter(app, user_id, id)?.ok_or_else(|| Error::invalid_param("No filter with that ID"))?;
    sync::parse_filter(&stored)
}

/// A stored filter, parsed. One that cannot be parsed (stored before the
/// nesting limit, or damaged) is logged and counts as absent.
fn stored_filter(app: &App, user_id: &str, id: i64) -> Result<Option<Value>> {
    let Some(text) = app.db.read(|c| account_data::filter(c, user_id, id))? else { return Ok(None) };
    match serde_json::from_str(&text) {
        Ok(value) => Ok(Some(value)),
        Err(e) => {
            log::warn(format_args!("skipping unreadable stored filter {id} of {user_id}: {e}"));
            Ok(None)
        }
    }
}

/// GET /_matrix/client/v3/sync
pub fn sync(app: &App, req: &Request) -> Result<Poll> {
    let who = req.user()?;
    let since = match req.query("since") {
        None => None,
        Some(t) => Some(Since::parse(t).ok_or_else(|| Error::invalid_param("Invalid since token"))?),
    };
    let timeout_ms = match req.query("timeout") {
        None => 0,
        Some(t) => t.parse::<u64>().map_err(|_| Error::invalid_param("timeout must be a whole number"))?,
    }
    .min(app.config.sync_timeout_max_ms);
    let full_state = match req.query("full_state") {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(Error::invalid_param("full_state must be true or false")),
    };
    let filter = load_filter(app, &who.user_id, req.query("filter"))?;
    let presence = crate::ephemeral::PresenceState::parse(req.query("set_presence").unwrap_or("online"))
        .ok_or_else(|| Error::invalid_param("set_presence must be online, unavailable or offline"))?;
    app.db.read(|c| crate::ephemeral::mark_sync(app, c, &who.user_id, presence))?;
    // The client has what the previous answer (up to `since`) carried.
    // Forgetting it is a write; on a full disk the sync goes on (the
    // messages are sent again and forgotten once there is space).
    if let Some(s) = since {
        match sync::e2ee::acknowledge_to_device(app, &who.user_id, &who.device_id, s.pos) {
            Ok(()) => {}
            Err(e) if e.kind == ErrorKind::StorageFull => {}
            Err(e) => return Err(e),
        }
    }
    let mut waiter = SyncWaiter {
        user_id: who.user_id.clone(),
        device_id: who.device_id.clone(),
        since,
        full_state,
        filter,
        rooms: HashSet::new(),
        seen: (0, 0),
    };
    let answer = waiter.compute(app)?;
    if !answer.empty || since.is_none() || full_state || timeout_ms == 0 {
        return Ok(Poll::Ready(Response { status: 200, body: Some(answer.body) }));
    }
    Ok(Poll::Wait(Box::new(waiter), Instant::now() + Duration::from_millis(timeout_ms)))
}

/// A sync waiting for something new.
struct SyncWaiter {
    user_id: String,
    device_id: String,
    since: Option<Since>,
    full_state: bool,
    filter: SyncFilter,
    rooms: HashSet<String>,
    seen: (i64, u64),
}

impl SyncWaiter {
    fn compute(&mut self, app: &App) -> Result<sync::Answer> {
        let req = sync::Request {
            user_id: &self.user_id,
            device_id: &self.device_id,
            since: self.since,
            full_state: self.full_state,
            filter: &self.filter,
        };
        let answer = app.db.read(|c| sync::compute(app, c, &req))?;
        self.seen = (answer.next.pos, answer.next.ephemeral);
        self.rooms = answer.joined.clone();
        Ok(answer)
    }
}

impl Waiter for SyncWaiter {
    fn user_id(&self) -> &str {
        &self.user_id
    }
    fn rooms(&self) -> &HashSet<String> {
        &self.rooms
    }
    fn seen(&self) -> (i64, u64) {
        self.seen
    }
    fn poll(&mut self, app: &App) -> Result<Option<Response>> {
        let answer = self.compute(app)?;
        Ok((!answer.empty).then_some(Response { status: 200, body: Some(answer.body) }))
    }
    fn timeout_response(&mut self, app: &App) -> Result<Response> {
        let answer = self.compute(app)?;
        Ok(Response { status: 200, body: Some(answer.body) })
    }
}

/// POST /_matrix/client/v3/user/{userId}/filter
pub fn create_filter(app: &App, req: &Request) -> Result<Response> {
    let who = req.user()?;
    if req.param("userId") != who.user_id {
        return Err(Error::forbidden("You can only create filters for yourself"));
    }
    let value = req.json_value()?;
    if req.body.len() > FILTER_JSON_MAX_BYTES {
        return Err(Error::bad_json("The filter is too long"));
    }
    sync::parse_filter(&value)?;
    let text = value.to_string();
    let id = app.db.write(|c| account_data::add_filter(c, &who.user_id, &text))?;
    Response::ok(json!({ "filter_id": id.to_string() }))
}

/// GET /_matrix/client/v3/user/{userId}/filter/{filterId}
pub fn get_filter(app: &App, req: &Request) -> Result<Response> {
    let who = req.user()?;
    if req.param("userId") != who.user_id {
        return Err(Error::forbidden("You can only read your own filters"));
    }
    let id: i64 = req.param("filterId").parse().map_err(|_| Error::not_found("No such filter"))?;
    let value = stored_filter(app, &who.user_id, id)?.ok_or_else(|| Error::not_found("No such filter"))?;
    Response::ok(value)
}
