//! The federation content repository: this server's own media for other
//! servers, as `multipart/mixed` (the metadata part `{}`, then the media
//! part with its `Content-Type` and `Content-Disposition`), streamed from
//! the database's chunks like a client download, with a `Content-Length`
//! (the framing's length is known). Unknown media is 404 `M_NOT_FOUND`;
//! an ID still waiting for its upload 504 `M_NOT_YET_UPLOADED`.
//!
//! **Architecture Invariant:** only media this server holds as its own
//! (`origin` = our server name) is served; copies of other servers' media
//! in the remote cache never are (the paths carry no server name, and the
//! lookup is by ours).

use std::io::{Cursor, Read};

use crate::api::media::{self, Outcome, Served};
use crate::api::{RawBody, RawResponse, Request};
use crate::app::App;
use crate::error::Result;
use crate::federation::media as fed_media;

/// GET /_matrix/federation/v1/media/download/{mediaId}
pub fn download<'a>(app: &'a App, req: &Request) -> Result<RawResponse<'a>> {
    Ok(answer(media::local_download(app, req.param("mediaId"))?))
}

/// GET /_matrix/federation/v1/media/thumbnail/{mediaId}
pub fn thumbnail<'a>(app: &'a App, req: &Request) -> Result<RawResponse<'a>> {
    Ok(answer(media::local_thumbnail(app, req)?))
}

fn answer(outcome: Outcome<'_>) -> RawResponse<'_> {
    match outcome {
        Outcome::Media(served) => multipart(served),
        Outcome::NotYetUploaded => {
            RawResponse::error(504, "M_NOT_YET_UPLOADED", "Content has not yet been uploaded")
        }
    }
}

/// The media framed as the spec's two parts, with a fresh boundary.
fn multipart(served: Served<'_>) -> RawResponse<'_> {
    let boundary = fed_media::boundary();
    let (head, tail) = fed_media::frame(&boundary, &served.content_type, &served.disposition);
    let (reader, len): (Box<dyn Read + '_>, u64) = match served.body {
        RawBody::Bytes(b) => {
            let len = b.len() as u64;
            (Box::new(Cursor::new(b)), len)
        }
        RawBody::Stream { reader, len } => (reader, len),
    };
    let total = head.len() as u64 + len + tail.len() as u64;
    RawResponse {
        status: 200,
        content_type: format!("multipart/mixed; boundary={boundary}"),
        headers: Vec::new(),
        body: RawBody::Stream {
            reader: Box::new(Cursor::new(head).chain(reader.take(len)).chain(Cursor::new(tail))),
            len: total,
        },
    }
}
