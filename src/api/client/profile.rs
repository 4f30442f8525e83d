//! Profiles and the user directory.

use crate::api::{Request, Response};
use crate::app::App;
use crate::error::{Error, ErrorKind, Result};

pub fn get_profile(_app: &App, _req: &Request) -> Result<Response> {
    Err(Error::new(ErrorKind::Unrecognized, "not built yet"))
}

pub fn get_displayname(_app: &App, _req: &Request) -> Result<Response> {
    Err(Error::new(ErrorKind::Unrecognized, "not built yet"))
}

pub fn set_displayname(_app: &App, _req: &Request) -> Result<Response> {
    Err(Error::new(ErrorKind::Unrecognized, "not built yet"))
}

pub fn get_avatar_url(_app: &App, _req: &Request) -> Result<Response> {
    Err(Error::new(ErrorKind::Unrecognized, "not built yet"))
}

pub fn set_avatar_url(_app: &App, _req: &Request) -> Result<Response> {
    Err(Error::new(ErrorKind::Unrecognized, "not built yet"))
}

pub fn user_directory_search(_app: &App, _req: &Request) -> Result<Response> {
    Err(Error::new(ErrorKind::Unrecognized, "not built yet"))
}
