//! `GET` and `POST /_matrix/federation/v1/publicRooms` (Server-Server
//! API, "Published Room Directory"): this server's published rooms, the
//! same listing and pagination the client API's `/publicRooms` serves
//! (`api::client::directory::local_directory`). Only our own directory:
//! this server lists no other's.

use crate::api::client::directory::{local_directory, Listing};
use crate::api::{Request, Response};
use crate::app::App;
use crate::error::Result;

/// The federation API's `limit` of 0 means "no limit": the largest page.
fn no_limit_is_largest(mut listing: Listing) -> Listing {
    if listing.limit == Some(0) {
        listing.limit = None;
    }
    listing
}

/// GET /_matrix/federation/v1/publicRooms?limit=&since=&include_all_networks=&third_party_instance_id=
pub fn list(app: &App, req: &Request) -> Result<Response> {
    let listing = no_limit_is_largest(Listing::from_query(req)?);
    Response::ok(local_directory(app, &listing)?)
}

/// POST /_matrix/federation/v1/publicRooms
pub fn list_filtered(app: &App, req: &Request) -> Result<Response> {
    let listing = no_limit_is_largest(Listing::from_body(req)?);
    Response::ok(local_directory(app, &listing)?)
}
