//! `GET /_matrix/federation/v1/hierarchy/{roomId}`: a room of this server
//! and its children for another server's space walk.
//!
//! No pagination: the room and every valid child (`suggested_only`
//! honoured) this server has state of. A child the requesting server may
//! see (`api::client::spaces::server_may_preview`) is summarised in
//! `children`; one it may not is named in `inaccessible_children`; a
//! child this server knows nothing of is left out, as the spec says. A
//! room unknown here, or one the requesting server may not see, is 404.
//! Children are listed without their own `children_state` (the spec's
//! `SpaceHierarchyChildRoomsChunk` has none): the other server asks for
//! a child space by itself.

use serde_json::{json, Value};

use crate::api::client::spaces::{children_of, local_summary, server_may_preview, CHILDREN_MAX};
use crate::api::{Request, Response};
use crate::app::App;
use crate::core::ids;
use crate::error::{Error, Result};

/// GET /_matrix/federation/v1/hierarchy/{roomId}
pub fn hierarchy(app: &App, req: &Request) -> Result<Response> {
    let origin = req.origin.as_deref().ok_or_else(|| Error::forbidden("Not a federation request"))?;
    let room_id = req.param("roomId");
    if !ids::is_valid_room_id(room_id) {
        return Err(Error::invalid_param("Invalid room ID"));
    }
    let suggested_only = match req.query("suggested_only") {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(Error::invalid_param(format!("suggested_only must be true or false, not {other:?}")))
        }
    };
    let answer = app.db.read(|tx| {
        let not_found = || Error::not_found("Unknown room, or not one your server may see");
        let room = local_summary(tx, room_id)?.ok_or_else(not_found)?;
        if !server_may_preview(tx, origin, &room)? {
            return Err(not_found());
        }
        let (mut children, mut inaccessible) = (Vec::new(), Vec::new());
        for child in children_of(&room).into_iter().take(CHILDREN_MAX) {
            if suggested_only && !child.suggested {
                continue;
            }
            let Some(mut summary) = local_summary(tx, &child.room_id)? else { continue };
            if server_may_preview(tx, origin, &summary)? {
                summary.remove("children_state");
                children.push(Value::Object(summary));
            } else {
                inaccessible.push(child.room_id);
            }
        }
        Ok(json!({ "room": room, "children": children, "inaccessible_children": inaccessible }))
    })?;
    Response::ok(answer)
}
