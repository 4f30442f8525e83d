//! Account data and room tags.

use crate::api::{Request, Response};
use crate::app::App;
use crate::error::{Error, ErrorKind, Result};

pub fn get_global(_app: &App, _req: &Request) -> Result<Response> {
    Err(Error::new(ErrorKind::Unrecognized, "not built yet"))
}

pub fn put_global(_app: &App, _req: &Request) -> Result<Response> {
    Err(Error::new(ErrorKind::Unrecognized, "not built yet"))
}

pub fn get_room(_app: &App, _req: &Request) -> Result<Response> {
    Err(Error::new(ErrorKind::Unrecognized, "not built yet"))
}

pub fn put_room(_app: &App, _req: &Request) -> Result<Response> {
    Err(Error::new(ErrorKind::Unrecognized, "not built yet"))
}

pub fn get_tags(_app: &App, _req: &Request) -> Result<Response> {
    Err(Error::new(ErrorKind::Unrecognized, "not built yet"))
}

pub fn put_tag(_app: &App, _req: &Request) -> Result<Response> {
    Err(Error::new(ErrorKind::Unrecognized, "not built yet"))
}

pub fn delete_tag(_app: &App, _req: &Request) -> Result<Response> {
    Err(Error::new(ErrorKind::Unrecognized, "not built yet"))
}
