//! Simplified sliding sync (MSC4186):
//! `POST /_matrix/client/unstable/org.matrix.simplified_msc3575/sync`.
//! The answer is computed by `sync::sliding`; a request with a `pos` and
//! nothing new waits in the hub, like `/sync`, until something the user may
//! see happens or its timeout passes. Connection state lives in
//! `sync::conns` (per user, device and `conn_id`).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::api::{Poll, Request, Response, Waiter};
use crate::app::App;
use crate::error::{Error, ErrorKind, Result};
use crate::sync::conns::{ConnKey, Snapshot};
use crate::sync::sliding;

/// Longest `conn_id` accepted.
const CONN_ID_MAX_BYTES: usize = 256;

/// POST /_matrix/client/unstable/org.matrix.simplified_msc3575/sync
pub fn sync(app: &App, req: &Request) -> Result<Poll> {
    let who = req.user()?;
    let body = req.json_value()?;
    let conn_id = match body.get("conn_id") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) if s.len() <= CONN_ID_MAX_BYTES => s.clone(),
        Some(_) => {
            return Err(Error::bad_json(format!(
                "conn_id must be a string of at most {CONN_ID_MAX_BYTES} bytes"
            )))
        }
    };
    let pos = match req.query("pos") {
        None => None,
        Some(p) => Some(p.parse::<u64>().map_err(|_| unknown_pos())?),
    };
    let timeout_ms = match req.query("timeout") {
        None => 0,
        Some(t) => t.parse::<u64>().map_err(|_| Error::invalid_param("timeout must be a whole number"))?,
    }
    .min(app.config.sync_timeout_max_ms);
    let presence = crate::ephemeral::PresenceState::parse(req.query("set_presence").unwrap_or("online"))
        .ok_or_else(|| Error::invalid_param("set_presence must be online, unavailable or offline"))?;
    let key: ConnKey = (who.user_id.clone(), who.device_id.clone(), conn_id);
    let base = app.sliding.base(&key, pos).map_err(|_| unknown_pos())?;
    let parsed = sliding::parse(&body, &base)?;
    let to_device_since = match body.pointer("/extensions/to_device/since") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => {
            Some(s.parse::<i64>().map_err(|_| Error::invalid_param("Invalid to_device since"))?)
        }
        Some(_) => return Err(Error::bad_json("extensions.to_device.since must be a string")),
    };
    app.db.read(|c| crate::ephemeral::mark_sync(app, c, &who.user_id, presence))?;
    // To-device messages up to `since` were delivered: forgotten now (a
    // write; on a full disk they are sent again later).
    if let Some(since) = to_device_since {
        match crate::sync::e2ee::acknowledge_to_device(app, &who.user_id, &who.device_id, since) {
            Ok(()) => {}
            Err(e) if e.kind == ErrorKind::StorageFull => {}
            Err(e) => return Err(e),
        }
    }
    let mut waiter =
        SlidingWaiter { key, base, request: parsed, to_device_since, rooms: HashSet::new(), seen: (0, 0) };
    let answer = waiter.compute(app)?;
    if !answer.empty || pos.is_none() || timeout_ms == 0 {
        return Ok(Poll::Ready(waiter.answer(app, answer)));
    }
    Ok(Poll::Wait(Box::new(waiter), Instant::now() + Duration::from_millis(timeout_ms)))
}

fn unknown_pos() -> Error {
    Error::new(ErrorKind::UnknownPos, "Unknown pos: start the connection over")
}

/// A sliding sync waiting for something new.
struct SlidingWaiter {
    key: ConnKey,
    base: Snapshot,
    request: sliding::Request,
    to_device_since: Option<i64>,
    rooms: HashSet<String>,
    seen: (i64, u64),
}

impl SlidingWaiter {
    fn compute(&mut self, app: &App) -> Result<sliding::Answer> {
        let (user, device) = (&self.key.0, &self.key.1);
        let answer = app.db.read(|c| {
            sliding::compute(app, c, user, device, &self.request, &self.base, self.to_device_since)
        })?;
        self.seen = (answer.snapshot.stream, answer.snapshot.ephemeral);
        self.rooms = answer.rooms.clone();
        Ok(answer)
    }

    /// Records what the answer stands for and hands it out with its `pos`.
    fn answer(&self, app: &App, answer: sliding::Answer) -> Response {
        let mut snapshot = answer.snapshot;
        snapshot.id = app.sliding.next_pos();
        let mut body = answer.body;
        body["pos"] = Value::String(snapshot.id.to_string());
        app.sliding.record(&self.key, self.base.id, snapshot);
        Response { status: 200, body: Some(body) }
    }
}

impl Waiter for SlidingWaiter {
    fn user_id(&self) -> &str {
        &self.key.0
    }
    fn rooms(&self) -> &HashSet<String> {
        &self.rooms
    }
    fn seen(&self) -> (i64, u64) {
        self.seen
    }
    fn poll(&mut self, app: &App) -> Result<Option<Response>> {
        let answer = self.compute(app)?;
        Ok((!answer.empty).then(|| self.answer(app, answer)))
    }
    fn timeout_response(&mut self, app: &App) -> Result<Response> {
        let answer = self.compute(app)?;
        Ok(self.answer(app, answer))
    }
}
