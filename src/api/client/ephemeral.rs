//! Typing, receipts, read markers and presence.

use crate::api::{Request, Response};
use crate::app::App;
use crate::error::{Error, ErrorKind, Result};

pub fn typing(_app: &App, _req: &Request) -> Result<Response> {
    Err(Error::new(ErrorKind::Unrecognized, "not built yet"))
}

pub fn receipt(_app: &App, _req: &Request) -> Result<Response> {
    Err(Error::new(ErrorKind::Unrecognized, "not built yet"))
}

pub fn read_markers(_app: &App, _req: &Request) -> Result<Response> {
    Err(Error::new(ErrorKind::Unrecognized, "not built yet"))
}

pub fn get_presence(_app: &App, _req: &Request) -> Result<Response> {
    Err(Error::new(ErrorKind::Unrecognized, "not built yet"))
}

pub fn set_presence(_app: &App, _req: &Request) -> Result<Response> {
    Err(Error::new(ErrorKind::Unrecognized, "not built yet"))
}

pub fn get_presence_list(_app: &App, _req: &Request) -> Result<Response> {
    Err(Error::new(ErrorKind::Unrecognized, "not built yet"))
}

pub fn update_presence_list(_app: &App, _req: &Request) -> Result<Response> {
    Err(Error::new(ErrorKind::Unrecognized, "not built yet"))
}
