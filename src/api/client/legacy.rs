//! The original specification's v1 surface.

use crate::api::{Poll, Request, Response};
use crate::app::App;
use crate::error::{Error, ErrorKind, Result};

pub fn initial_sync(_app: &App, _req: &Request) -> Result<Response> {
    Err(Error::new(ErrorKind::Unrecognized, "not built yet"))
}

pub fn room_initial_sync(_app: &App, _req: &Request) -> Result<Response> {
    Err(Error::new(ErrorKind::Unrecognized, "not built yet"))
}

pub fn get_event(_app: &App, _req: &Request) -> Result<Response> {
    Err(Error::new(ErrorKind::Unrecognized, "not built yet"))
}

pub fn events(_app: &App, _req: &Request) -> Result<Poll> {
    Err(Error::new(ErrorKind::Unrecognized, "not built yet"))
}
