//! TURN credentials for calls.

use crate::api::{Request, Response};
use crate::app::App;
use crate::error::{Error, ErrorKind, Result};

pub fn turn_server(_app: &App, _req: &Request) -> Result<Response> {
    Err(Error::new(ErrorKind::Unrecognized, "not built yet"))
}
