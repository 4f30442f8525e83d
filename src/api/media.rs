//! The content repository: uploads (`/upload`, and `/create` then a PUT to
//! the reserved ID), downloads and thumbnails on the authenticated
//! `/_matrix/client/v1/media` endpoints, the deprecated unauthenticated
//! `/_matrix/media/v3` ones (only for media older than the configured
//! freeze), and `/config`.
//!
//! An upload streams: the body is read in `SPILL_BYTES` pieces, hashed,
//! and each piece written as chunks of a staged content in its own short
//! write, so a slow client never holds the single writer and memory stays
//! at one piece. The final write names the content by its SHA-256 (reusing
//! stored bytes when they are the same) and records the media ID, in one
//! transaction. Downloads stream the chunks back the same way.
//!
//! Media of another server (an `mxc://` whose server name is not ours)
//! comes from the remote media cache or is fetched from its origin over
//! federation (`federation::media`); its thumbnails are made here from
//! a cached original, else fetched. The federation endpoints
//! (`api::federation::media`) serve this server's own media through
//! [`local_download`] and [`local_thumbnail`].

use serde_json::json;
use sha2::{Digest, Sha256};

use crate::api::{RawBody, RawResponse, Request, Response, UploadBody};
use crate::app::App;
use crate::core::ids;
use crate::crypto::token;
use crate::error::{Error, ErrorKind, Result};
use crate::federation::media as fed_media;
use crate::media::thumbnail::{self, Method};
use crate::media::{self as logic, MEDIA_ID_LEN};
use crate::storage::media::{self as store, ContentReader, Media, Upload, CHUNK_BYTES};
use crate::storage::now_ms;

/// How long an ID from `/create` waits for its bytes (the spec's
/// recommended 24 hours).
pub const UNUSED_EXPIRY_MS: i64 = 24 * 60 * 60 * 1000;
/// IDs from `/create` a user may have waiting at once.
pub const PENDING_UPLOADS_MAX: i64 = 10;
/// Chunks read and written per staging write: the memory an upload holds.
const SPILL_CHUNKS: usize = 4;
const SPILL_BYTES: usize = CHUNK_BYTES * SPILL_CHUNKS;
/// Media never changes once stored. Authenticated answers must not sit in
/// shared caches; the legacy unauthenticated ones may.
const CACHE_PRIVATE: &str = "private, max-age=31536000, immutable";
const CACHE_PUBLIC: &str = "public, max-age=31536000, immutable";
/// Types the thumbnailer reads.
const THUMBNAILABLE: &[&str] = &["image/png", "image/jpeg", "image/gif", "image/webp"];

/// POST /_matrix/media/v3/upload
pub fn upload(app: &App, req: &Request, body: &mut UploadBody<'_>) -> Result<Response> {
    let who = req.user()?;
    let filename = filename_param(req)?;
    let content_type = logic::clean_content_type(body.content_type());
    check_declared_quota(app, &who.user_id, body)?;
    let received = receive(app, body)?;
    let media_id = token::random_string(MEDIA_ID_LEN, token::ALNUM);
    let origin = app.config.server_name.as_str();
    let finished = app.db.write(|tx| {
        check_quota(app, tx, &who.user_id, received.size)?;
        let now = now_ms();
        let content_id = store::stage_finish(tx, received.staged, &received.sha256, now)?;
        let upload = Upload {
            origin,
            media_id: &media_id,
            user_id: &who.user_id,
            content_id,
            content_type: &content_type,
            filename: filename.as_deref(),
            size: received.size,
        };
        if !store::insert_uploaded(tx, &upload, now)? {
            return Err(Error::internal("a fresh random media ID was taken"));
        }
        Ok(())
    });
    if finished.is_err() {
        let _ = app.db.write(|tx| store::stage_discard(tx, received.staged));
    }
    finished?;
    Response::ok(json!({ "content_uri": format!("mxc://{origin}/{media_id}") }))
}

/// POST /_matrix/media/v1/create
pub fn create(app: &App, req: &Request) -> Result<Response> {
    let who = req.user()?;
    let media_id = token::random_string(MEDIA_ID_LEN, token::ALNUM);
    let origin = app.config.server_name.as_str();
    let now = now_ms();
    let expires = now + UNUSED_EXPIRY_MS;
    app.db.write(|tx| {
        if store::pending_count(tx, &who.user_id, now)? >= PENDING_UPLOADS_MAX {
            return Err(Error::new(
                ErrorKind::LimitExceeded { retry_after_ms: 60_000 },
                "Too many media IDs are waiting for their upload",
            ));
        }
        if !store::create_pending(tx, origin, &media_id, &who.user_id, now, expires)? {
            return Err(Error::internal("a fresh random media ID was taken"));
        }
        Ok(())
    })?;
    Response::ok(json!({
        "content_uri": format!("mxc://{origin}/{media_id}"),
        "unused_expires_at": expires,
    }))
}

/// PUT /_matrix/media/v3/upload/{serverName}/{mediaId}
pub fn upload_to(app: &App, req: &Request, body: &mut UploadBody<'_>) -> Result<Response> {
    let who = req.user()?;
    let (origin, media_id) = (req.param("serverName"), req.param("mediaId"));
    let filename = filename_param(req)?;
    let content_type = logic::clean_content_type(body.content_type());
    let unknown = || Error::not_found("Unknown media ID");
    if origin != app.config.server_name || !logic::is_valid_media_id(media_id) {
        return Err(unknown());
    }
    let reserved = app.db.read(|tx| store::get(tx, origin, media_id))?.ok_or_else(unknown)?;
    if reserved.user_id.as_deref() != Some(who.user_id.as_str()) {
        return Err(Error::forbidden("This media ID was created by another user"));
    }
    if reserved.content_id.is_some() {
        return Ok(cannot_overwrite());
    }
    if reserved.expires_ts.is_some_and(|t| t <= now_ms()) {
        return Err(unknown());
    }
    check_declared_quota(app, &who.user_id, body)?;
    let received = receive(app, body)?;
    let finished = app.db.write(|tx| {
        check_quota(app, tx, &who.user_id, received.size)?;
        let now = now_ms();
        let content_id = store::stage_finish(tx, received.staged, &received.sha256, now)?;
        let upload = Upload {
            origin,
            media_id,
            user_id: &who.user_id,
            content_id,
            content_type: &content_type,
            filename: filename.as_deref(),
            size: received.size,
        };
        if !store::attach_content(tx, &upload, now)? {
            // Another upload to the same ID finished first.
            return Err(Error::new(ErrorKind::Conflict, "Media already uploaded"));
        }
        Ok(())
    });
    if finished.is_err() {
        let _ = app.db.write(|tx| store::stage_discard(tx, received.staged));
    }
    match finished {
        Err(e) if e.kind == ErrorKind::Conflict => Ok(cannot_overwrite()),
        Err(e) => Err(e),
        Ok(()) => Response::ok(json!({})),
    }
}

fn cannot_overwrite() -> Response {
    Response {
        status: 409,
        body: Some(json!({ "errcode": "M_CANNOT_OVERWRITE_MEDIA", "error": "Media already uploaded" })),
    }
}

/// The `filename` query parameter, bounded.
fn filename_param(req: &Request) -> Result<Option<String>> {
    match req.query("filename") {
        Some(f) if f.len() > logic::FILENAME_MAX_BYTES => {
            Err(Error::invalid_param(format!("filename is longer than {} bytes", logic::FILENAME_MAX_BYTES)))
        }
        Some("") | None => Ok(None),
        Some(f) => Ok(Some(f.to_owned())),
    }
}

/// Refuses at once an upload whose declared length would pass the quota.
fn check_declared_quota(app: &App, user_id: &str, body: &UploadBody<'_>) -> Result<()> {
    let quota = app.config.media_quota_bytes;
    match body.declared_len() {
        Some(len) if quota > 0 && len <= body.limit() => {
            let used = app.db.read(|tx| store::user_usage(tx, user_id))?;
            if used.saturating_add(i64::try_from(len).unwrap_or(i64::MAX)) > quota_i64(quota) {
                return Err(over_quota());
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// The quota check of the final write, which sees every finished upload.
fn check_quota(app: &App, tx: &rusqlite::Connection, user_id: &str, size: i64) -> Result<()> {
    let quota = app.config.media_quota_bytes;
    if quota > 0 && store::user_usage(tx, user_id)?.saturating_add(size) > quota_i64(quota) {
        return Err(over_quota());
    }
    Ok(())
}

fn quota_i64(quota: u64) -> i64 {
    i64::try_from(quota).unwrap_or(i64::MAX)
}

fn over_quota() -> Error {
    Error::forbidden("Your media quota would be exceeded")
}

/// An upload read in full into a staged content.
struct Received {
    staged: i64,
    sha256: [u8; 32],
    size: i64,
}

/// Reads the body into a staged content, hashing as it goes. Nothing is
/// written before the first piece is in (so a declared oversize is refused
/// with nothing stored); on any failure the staged content is dropped.
fn receive(app: &App, body: &mut UploadBody<'_>) -> Result<Received> {
    let mut buf = vec![0u8; SPILL_BYTES];
    let mut n = body.fill(&mut buf)?;
    let staged = app.db.write(|tx| {
        let now = now_ms();
        store::discard_stale_staging(tx, now - store::STAGED_STALE_MS)?;
        store::stage_begin(tx, now)
    })?;
    let spilled = (|| -> Result<Received> {
        let mut hasher = Sha256::new();
        let (mut idx, mut size) = (0i64, 0i64);
        loop {
            if n > 0 {
                hasher.update(&buf[..n]);
                let chunks: Vec<&[u8]> = buf[..n].chunks(CHUNK_BYTES).collect();
                app.db.write(|tx| store::stage_append(tx, staged, idx, &chunks, now_ms()))?;
                idx += chunks.len() as i64;
                size += n as i64;
            }
            // Only the end of the body leaves the buffer short, so every
            // chunk but the last is full.
            if n < buf.len() {
                break;
            }
            n = body.fill(&mut buf)?;
        }
        Ok(Received { staged, sha256: hasher.finalize().into(), size })
    })();
    if spilled.is_err() {
        let _ = app.db.write(|tx| store::stage_discard(tx, staged));
    }
    spilled
}

/// GET /_matrix/client/v1/media/config (and the deprecated
/// /_matrix/media/v3/config)
pub fn config(app: &App, req: &Request) -> Result<Response> {
    req.user()?;
    Response::ok(json!({ "m.upload.size": app.config.max_upload_bytes }))
}

/// Which endpoint family asks: the authenticated one, or the deprecated
/// unauthenticated one, which serves only media from before the freeze.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Access {
    Authenticated,
    Legacy,
}

/// GET /_matrix/client/v1/media/download/{serverName}/{mediaId}[/{fileName}]
pub fn download<'a>(app: &'a App, req: &Request) -> Result<RawResponse<'a>> {
    serve_download(app, req, Access::Authenticated)
}

/// GET /_matrix/media/v3/download/{serverName}/{mediaId}[/{fileName}]
/// (deprecated; frozen for media uploaded after `unauthenticated_media_before_ms`)
pub fn legacy_download<'a>(app: &'a App, req: &Request) -> Result<RawResponse<'a>> {
    serve_download(app, req, Access::Legacy)
}

/// GET /_matrix/client/v1/media/thumbnail/{serverName}/{mediaId}
pub fn thumbnail<'a>(app: &'a App, req: &Request) -> Result<RawResponse<'a>> {
    serve_thumbnail(app, req, Access::Authenticated)
}

/// GET /_matrix/media/v3/thumbnail/{serverName}/{mediaId} (deprecated; frozen)
pub fn legacy_thumbnail<'a>(app: &'a App, req: &Request) -> Result<RawResponse<'a>> {
    serve_thumbnail(app, req, Access::Legacy)
}

/// Media found with its bytes, or an ID still waiting for them.
enum Found {
    Ready(Box<fed_media::Served>),
    NotYetUploaded,
}

/// Media ready to send, before the endpoint frames it (the client
/// endpoints send it as the body, the federation ones as the second
/// part of a `multipart/mixed` answer).
pub struct Served<'a> {
    pub content_type: String,
    pub disposition: String,
    pub body: RawBody<'a>,
}

/// What a media request comes to: the media, or an ID still waiting
/// for its upload (504 `M_NOT_YET_UPLOADED`).
pub enum Outcome<'a> {
    Media(Served<'a>),
    NotYetUploaded,
}

fn valid(origin: &str, media_id: &str) -> Result<()> {
    if !ids::is_valid_server_name(origin) || !logic::is_valid_media_id(media_id) {
        return Err(Error::not_found("Media not found"));
    }
    Ok(())
}

/// This server's own media.
fn find_local(app: &App, media_id: &str, access: Access) -> Result<Found> {
    let origin = app.config.server_name.as_str();
    let missing = || Error::not_found("Media not found");
    let now = now_ms();
    let found = app.db.read(|tx| {
        let Some(media) = store::get(tx, origin, media_id)? else {
            return Ok(None);
        };
        let size = match media.content_id {
            Some(id) => store::content_size(tx, id)?,
            None => None,
        };
        Ok(Some((media, size)))
    })?;
    let Some((media, size)) = found else {
        return Err(missing());
    };
    if access == Access::Legacy && !before_freeze(app, &media) {
        return Err(frozen());
    }
    match (media.content_id, size) {
        (Some(content_id), Some(size)) => {
            Ok(Found::Ready(Box::new(fed_media::Served { media, content_id, size, transient: false })))
        }
        (None, _) if media.expires_ts.is_some_and(|t| t > now) => Ok(Found::NotYetUploaded),
        _ => Err(missing()),
    }
}

/// The freeze of the unauthenticated endpoints, as a timestamp.
fn freeze_ts(app: &App) -> i64 {
    i64::try_from(app.config.unauthenticated_media_before_ms).unwrap_or(i64::MAX)
}

/// Stored (uploaded, or cached from another server) before the freeze.
fn before_freeze(app: &App, media: &Media) -> bool {
    media.uploaded_ts.unwrap_or(media.created_ts) < freeze_ts(app)
}

fn frozen() -> Error {
    Error::not_found(
        "Media uploaded after the freeze is served only by the authenticated /_matrix/client/v1/media endpoints",
    )
}

/// Whether a request may fetch another server's media. The deprecated
/// endpoints may not once the freeze has come (then they serve only what
/// was cached before it), nor with `allow_remote=false` (which another
/// server sends so that requests cannot loop between servers).
fn may_fetch(app: &App, req: &Request, access: Access) -> bool {
    match access {
        Access::Authenticated => true,
        Access::Legacy => now_ms() < freeze_ts(app) && req.query("allow_remote") != Some("false"),
    }
}

/// Media of another server: the cached copy, or fetched from its origin
/// (`federation::media`), which keeps it.
fn find_remote(app: &App, req: &Request, origin: &str, media_id: &str, access: Access) -> Result<Found> {
    let served = fed_media::download(app, origin, media_id, may_fetch(app, req, access))?;
    if access == Access::Legacy && !before_freeze(app, &served.media) {
        return Err(frozen());
    }
    Ok(Found::Ready(Box::new(served)))
}

fn not_yet_uploaded() -> RawResponse<'static> {
    RawResponse::error(504, "M_NOT_YET_UPLOADED", "Content has not yet been uploaded")
}

/// The headers every piece of served media carries.
fn media_headers(disposition: String, access: Access) -> Vec<(&'static str, String)> {
    let cache = if access == Access::Legacy { CACHE_PUBLIC } else { CACHE_PRIVATE };
    vec![
        ("Content-Disposition", disposition),
        ("Content-Security-Policy", logic::CONTENT_SECURITY_POLICY.to_owned()),
        ("Cross-Origin-Resource-Policy", "cross-origin".to_owned()),
        ("X-Content-Type-Options", "nosniff".to_owned()),
        ("Cache-Control", cache.to_owned()),
    ]
}

/// A content's bytes as a stream; a transient one (remote media not
/// kept) is dropped once read.
fn stream(app: &App, content_id: i64, size: i64, transient: bool) -> RawBody<'_> {
    let len = u64::try_from(size).unwrap_or(0);
    let reader: Box<dyn std::io::Read + '_> = if transient {
        Box::new(fed_media::TransientReader::new(&app.db, content_id, len))
    } else {
        Box::new(ContentReader::new(&app.db, content_id, len))
    };
    RawBody::Stream { reader, len }
}

/// The client endpoints' answer: the media with its headers, or the
/// errors that carry an errcode of their own.
fn client_answer<'a>(outcome: Result<Outcome<'a>>, remote: bool, access: Access) -> Result<RawResponse<'a>> {
    match outcome {
        Ok(Outcome::Media(s)) => Ok(RawResponse {
            status: 200,
            headers: media_headers(s.disposition, access),
            content_type: s.content_type,
            body: s.body,
        }),
        Ok(Outcome::NotYetUploaded) => Ok(not_yet_uploaded()),
        // Remote content too large to serve (or thumbnail): 502, as the
        // spec and Synapse answer it.
        Err(e) if remote && fed_media::is_too_large(&e) => {
            Ok(RawResponse::error(502, "M_TOO_LARGE", &e.message))
        }
        Err(e) => Err(e),
    }
}

fn serve_download<'a>(app: &'a App, req: &Request, access: Access) -> Result<RawResponse<'a>> {
    let (origin, media_id) = (req.param("serverName"), req.param("mediaId"));
    valid(origin, media_id)?;
    let remote = origin != app.config.server_name;
    let found = if remote {
        find_remote(app, req, origin, media_id, access)
    } else {
        find_local(app, media_id, access)
    };
    client_answer(found.map(|f| download_of(app, f, req.param_opt("fileName"))), remote, access)
}

/// GET /_matrix/federation/v1/media/download/{mediaId}: this server's own
/// media only (never a cached copy of another's).
pub fn local_download<'a>(app: &'a App, media_id: &str) -> Result<Outcome<'a>> {
    if !logic::is_valid_media_id(media_id) {
        return Err(Error::not_found("Media not found"));
    }
    find_local(app, media_id, Access::Authenticated).map(|f| download_of(app, f, None))
}

fn download_of<'a>(app: &'a App, found: Found, filename: Option<&str>) -> Outcome<'a> {
    let (media, content_id, size, transient) = match found {
        Found::Ready(r) => (r.media, r.content_id, r.size, r.transient),
        Found::NotYetUploaded => return Outcome::NotYetUploaded,
    };
    let content_type = media.content_type.unwrap_or_else(|| logic::clean_content_type(None));
    let disposition = logic::content_disposition(&content_type, filename.or(media.filename.as_deref()));
    Outcome::Media(Served { content_type, disposition, body: stream(app, content_id, size, transient) })
}

/// `width`/`height`: a whole number of pixels, 1 or more.
fn dimension(req: &Request, name: &str) -> Result<u32> {
    let text = req.query(name).ok_or_else(|| Error::missing_param(format!("{name} is required")))?;
    text.parse::<u32>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| Error::invalid_param(format!("{name} must be a positive whole number")))
}

/// A thumbnail request's parameters.
struct Asked {
    width: u32,
    height: u32,
    method: Method,
    animated: Option<bool>,
}

fn asked(req: &Request) -> Result<Asked> {
    let width = dimension(req, "width")?;
    let height = dimension(req, "height")?;
    let method = match req.query("method") {
        None => Method::Scale,
        Some(m) => Method::parse(m).ok_or_else(|| Error::invalid_param("method must be crop or scale"))?,
    };
    let animated = match req.query("animated") {
        None => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(_) => return Err(Error::invalid_param("animated must be true or false")),
    };
    Ok(Asked { width, height, method, animated })
}

impl Asked {
    /// The query asking another server for the same thumbnail.
    fn query(&self) -> String {
        let mut q = format!("width={}&height={}&method={}", self.width, self.height, self.method.as_str());
        if let Some(a) = self.animated {
            q.push_str(&format!("&animated={a}"));
        }
        q
    }
}

fn serve_thumbnail<'a>(app: &'a App, req: &Request, access: Access) -> Result<RawResponse<'a>> {
    let asked = asked(req)?;
    let (origin, media_id) = (req.param("serverName"), req.param("mediaId"));
    valid(origin, media_id)?;
    if origin == app.config.server_name {
        let outcome = find_local(app, media_id, access).and_then(|f| thumbnail_of(app, f, &asked));
        return client_answer(outcome, false, access);
    }
    client_answer(remote_thumbnail(app, req, origin, media_id, access, &asked), true, access)
}

/// GET /_matrix/federation/v1/media/thumbnail/{mediaId}: a thumbnail of
/// this server's own media only.
pub fn local_thumbnail<'a>(app: &'a App, req: &Request) -> Result<Outcome<'a>> {
    let asked = asked(req)?;
    let media_id = req.param("mediaId");
    if !logic::is_valid_media_id(media_id) {
        return Err(Error::not_found("Media not found"));
    }
    find_local(app, media_id, Access::Authenticated).and_then(|f| thumbnail_of(app, f, &asked))
}

/// A thumbnail of another server's media: made here from the cached
/// original when there is one this server can thumbnail, else fetched
/// from the origin for this answer (not kept).
fn remote_thumbnail<'a>(
    app: &'a App,
    req: &Request,
    origin: &str,
    media_id: &str,
    access: Access,
    asked: &Asked,
) -> Result<Outcome<'a>> {
    let fetch = may_fetch(app, req, access);
    let cached = match fed_media::download(app, origin, media_id, false) {
        Ok(c) => Some(c),
        Err(e) if e.kind == ErrorKind::NotFound && fetch && app.federation.allowed(origin) => None,
        Err(e) => return Err(e),
    };
    if let Some(c) = cached {
        if access == Access::Legacy && !before_freeze(app, &c.media) {
            return Err(frozen());
        }
        let thumbnailable = c
            .media
            .content_type
            .as_deref()
            .is_some_and(|t| THUMBNAILABLE.contains(&logic::essence(t).as_str()));
        if thumbnailable || !fetch {
            return thumbnail_of(app, Found::Ready(Box::new(c)), asked);
        }
    }
    let t = fed_media::thumbnail(app, origin, media_id, &asked.query())?;
    let content_type = t.media.content_type.unwrap_or_else(|| logic::clean_content_type(None));
    let disposition = logic::content_disposition(&content_type, Some(&thumbnail_name(&content_type)));
    Ok(Outcome::Media(Served { content_type, disposition, body: stream(app, t.content_id, t.size, true) }))
}

/// The file name a thumbnail is served under.
fn thumbnail_name(content_type: &str) -> String {
    let essence = logic::essence(content_type);
    format!("thumbnail.{}", essence.strip_prefix("image/").unwrap_or("bin"))
}

/// The thumbnail of `found` for `asked`: stored, made now, or the
/// original when no standard size is smaller.
fn thumbnail_of<'a>(app: &'a App, found: Found, asked: &Asked) -> Result<Outcome<'a>> {
    let (media, content_id, size, transient) = match found {
        Found::Ready(r) => (r.media, r.content_id, r.size, r.transient),
        Found::NotYetUploaded => return Ok(Outcome::NotYetUploaded),
    };
    let content_type = media.content_type.unwrap_or_default();
    if !THUMBNAILABLE.contains(&logic::essence(&content_type).as_str()) {
        return Err(cannot_thumbnail());
    }
    let answer = |content_type: String, body: RawBody<'a>| {
        let disposition = format!("inline; filename=\"{}\"", thumbnail_name(&content_type));
        Outcome::Media(Served { content_type, disposition, body })
    };
    let original = |content_type: String| {
        answer(logic::essence(&content_type), stream(app, content_id, size, transient))
    };
    // No standard size is large enough: the original is the best answer.
    let Some(standard) = thumbnail::choose(asked.width, asked.height, asked.method) else {
        return Ok(original(content_type));
    };
    let method_name = standard.method.as_str();
    let stored =
        app.db.read(|tx| store::thumbnail(tx, content_id, standard.width, standard.height, method_name))?;
    if let Some(t) = stored {
        return Ok(answer(t.content_type, stream(app, t.thumb_id, t.size, false)));
    }
    match make_thumbnail(app, content_id, size, standard)? {
        Some((thumb_type, body)) => Ok(answer(thumb_type, body)),
        None => Ok(original(content_type)),
    }
}

/// Makes, stores and returns the thumbnail of `standard` of a content of
/// `size` bytes; `None`: the original is no larger, serve it.
#[cfg(feature = "thumbnails")]
fn make_thumbnail<'a>(
    app: &'a App,
    content_id: i64,
    size: i64,
    standard: thumbnail::Size,
) -> Result<Option<(String, RawBody<'a>)>> {
    use crate::media::thumbnail::{ThumbError, Thumbnail};
    let input =
        std::io::BufReader::new(ContentReader::new(&app.db, content_id, u64::try_from(size).unwrap_or(0)));
    match thumbnail::make(input, standard) {
        Ok(Thumbnail::Original) => Ok(None),
        Ok(Thumbnail::Made { bytes, content_type: thumb_type, .. }) => {
            let sha256: [u8; 32] = Sha256::digest(&bytes).into();
            let method_name = standard.method.as_str();
            app.db.write(|tx| {
                let now = now_ms();
                let thumb_id = store::store_bytes(tx, &bytes, &sha256, now)?;
                let (w, h) = (standard.width, standard.height);
                store::insert_thumbnail(tx, content_id, w, h, method_name, thumb_id, thumb_type)
            })?;
            Ok(Some((thumb_type.to_owned(), RawBody::Bytes(bytes))))
        }
        Err(ThumbError::TooLarge) => {
            Err(Error::new(ErrorKind::TooLarge, "The image is too large to thumbnail"))
        }
        Err(ThumbError::Unsupported(_)) => Err(cannot_thumbnail()),
    }
}

/// Built without the `thumbnails` feature (no image decoders): the
/// original is the answer. The spec allows it: a thumbnail must never be
/// smaller than asked nor upscaled, which the original never is, and the
/// answer's type is one of the image types a thumbnail may have (only
/// `THUMBNAILABLE` types get here; others are 400 "cannot generate
/// thumbnails", the spec's answer for content the server cannot
/// thumbnail). Thumbnails a build with the feature stored are still served.
#[cfg(not(feature = "thumbnails"))]
fn make_thumbnail<'a>(
    _app: &'a App,
    _content_id: i64,
    _size: i64,
    _standard: thumbnail::Size,
) -> Result<Option<(String, RawBody<'a>)>> {
    Ok(None)
}

fn cannot_thumbnail() -> Error {
    Error::new(ErrorKind::Unknown, "Cannot generate thumbnails for the requested content")
}
