//! The one error type of the server: a Matrix error kind, a message a person
//! can read, and the HTTP status that goes with the kind.
//!
//! Handlers return `Result<T, Error>`; only `http/` turns an `Error` into a
//! response body. This module knows nothing else of the crate.

use std::borrow::Cow;
use std::fmt;

/// What went wrong, as the Matrix specification names it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ErrorKind {
    Forbidden,
    UnknownToken {
        soft_logout: bool,
    },
    MissingToken,
    BadJson,
    NotJson,
    NotFound,
    LimitExceeded {
        retry_after_ms: u64,
    },
    /// Unknown endpoint (404).
    Unrecognized,
    /// Known endpoint, wrong method (405).
    MethodNotAllowed,
    TooLarge,
    InvalidParam,
    MissingParam,
    InvalidUsername,
    UserInUse,
    UserDeactivated,
    GuestAccessForbidden,
    Exclusive,
    WeakPassword,
    /// The room alias is taken.
    RoomInUse,
    UnsupportedRoomVersion,
    /// 400 `M_INCOMPATIBLE_ROOM_VERSION` (federation joins): the room's
    /// version is not among those the joining server offered; the body
    /// names it in `room_version`.
    IncompatibleRoomVersion {
        room_version: &'static str,
    },
    /// 400 `M_UNABLE_TO_AUTHORISE_JOIN` (federation joins): the room is
    /// restricted and this server knows none of the rooms its rules name.
    UnableToAuthoriseJoin,
    /// 400 `M_UNABLE_TO_GRANT_JOIN` (federation joins): the joining user
    /// meets the restricted room's rules, but no user of this server may
    /// authorise the join; another server should be tried.
    UnableToGrantJoin,
    /// An `m.room.canonical_alias` names an alias that is invalid or not
    /// this room's.
    BadAlias,
    /// The initial state of a new room is not valid.
    InvalidRoomState,
    /// 409 with `M_UNKNOWN`: the thing exists already (e.g. a room alias).
    Conflict,
    /// A sliding sync `pos` the server does not know (any more): the client
    /// starts the connection over (MSC4186).
    UnknownPos,
    /// 400 `M_DUPLICATE_ANNOTATION`: the sender already reacted to the
    /// event with this key (Synapse's code, which clients expect; the spec
    /// says only that servers may refuse the duplicate).
    DuplicateAnnotation,
    /// A 400 the spec gives no more specific code for (e.g. an unknown UIA session).
    Unknown,
    /// 403 with `M_UNKNOWN`: a UIA session was presented with a request
    /// other than the one that opened it (another endpoint, or other
    /// parameters). The spec names no code; this is Synapse's answer, which
    /// clients already show.
    UiaOperationChanged,
    /// User-interactive authentication must go on: 401 with the UIA body
    /// (flows, params, session, completed) merged into the error.
    Uia(Box<serde_json::Value>),
    /// The database cannot grow: the disk (or the database's size cap) is
    /// full. 503 with `M_UNKNOWN`: the spec's `M_RESOURCE_LIMIT_EXCEEDED`
    /// must carry an `admin_contact`, which Hearth has no way to know.
    /// Reads keep working; writes succeed again once space is freed.
    StorageFull,
    /// 401 `M_UNAUTHORIZED`: a federation request without a valid
    /// `X-Matrix` signature.
    Unauthorized,
    /// 502 `M_UNKNOWN`: another server that a request needed could not be
    /// reached or gave no usable answer.
    BadGateway,
    /// 400 `M_UNKNOWN_DEVICE`: an application service named a device its
    /// user does not have (`device_id` masquerading).
    UnknownDevice,
    /// 400 `M_APPSERVICE_LOGIN_UNSUPPORTED`: `m.login.application_service`
    /// used in a way this server does not offer.
    AppserviceLoginUnsupported,
    /// 400 `M_URL_NOT_SET` (`/appservice/{id}/ping`): the registration
    /// has no `url`.
    UrlNotSet,
    /// 502 `M_CONNECTION_FAILED` (ping): the application service could
    /// not be reached.
    ConnectionFailed,
    /// 504 `M_CONNECTION_TIMEOUT` (ping): it did not answer in time.
    ConnectionTimeout,
    /// 502 `M_BAD_STATUS` (ping): it answered with an error; the body
    /// carries its `status` and `body`.
    BadStatus {
        status: u16,
        body: String,
    },
    /// A server-side failure. The message is logged, never sent.
    Internal,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Error {
    pub kind: ErrorKind,
    pub message: Cow<'static, str>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a client is told when a write fails for want of space.
pub const STORAGE_FULL_MESSAGE: &str = "server storage is full";

impl Error {
    /// A request text that is not an acceptable JSON document: too deep is
    /// `M_BAD_JSON`, not JSON at all `M_NOT_JSON`. `what` names the text
    /// ("Content", "The filter").
    pub fn json(e: crate::core::json::ParseError, what: &str) -> Error {
        match e {
            crate::core::json::ParseError::TooDeep(depth) => Error::bad_json(format!(
                "{what} nests {depth} levels deep; at most {} are allowed",
                crate::core::json::DEPTH_MAX
            )),
            crate::core::json::ParseError::NotJson => {
                Error::new(ErrorKind::NotJson, format!("{what} is not valid JSON"))
            }
        }
    }

    pub fn new(kind: ErrorKind, message: impl Into<Cow<'static, str>>) -> Error {
        Error { kind, message: message.into() }
    }
    pub fn forbidden(m: impl Into<Cow<'static, str>>) -> Error {
        Error::new(ErrorKind::Forbidden, m)
    }
    pub fn bad_json(m: impl Into<Cow<'static, str>>) -> Error {
        Error::new(ErrorKind::BadJson, m)
    }
    pub fn not_found(m: impl Into<Cow<'static, str>>) -> Error {
        Error::new(ErrorKind::NotFound, m)
    }
    pub fn invalid_param(m: impl Into<Cow<'static, str>>) -> Error {
        Error::new(ErrorKind::InvalidParam, m)
    }
    pub fn missing_param(m: impl Into<Cow<'static, str>>) -> Error {
        Error::new(ErrorKind::MissingParam, m)
    }
    /// Another server answered with something unusable (502).
    pub fn bad_gateway(m: impl Into<Cow<'static, str>>) -> Error {
        Error::new(ErrorKind::BadGateway, m)
    }
    /// A failure of the server itself; `detail` goes to the log only.
    pub fn internal(detail: impl Into<Cow<'static, str>>) -> Error {
        Error::new(ErrorKind::Internal, detail)
    }
    /// The database cannot grow (see [`ErrorKind::StorageFull`]).
    pub fn storage_full() -> Error {
        Error::new(ErrorKind::StorageFull, STORAGE_FULL_MESSAGE)
    }

    /// True for a failure of the server itself (a database error, full
    /// storage) rather than a refusal of the request: such an error must
    /// abort the request's transaction, never be logged and skipped, as
    /// the statement that failed may have left the others half done.
    pub fn is_server_failure(&self) -> bool {
        matches!(self.kind, ErrorKind::Internal | ErrorKind::StorageFull)
    }

    pub fn status(&self) -> u16 {
        use ErrorKind::*;
        match self.kind {
            Forbidden | UserDeactivated | GuestAccessForbidden | UiaOperationChanged => 403,
            UnknownToken { .. } | MissingToken | Uia(_) | Unauthorized => 401,
            BadJson
            | NotJson
            | InvalidParam
            | MissingParam
            | InvalidUsername
            | UserInUse
            | Exclusive
            | WeakPassword
            | Unknown
            | RoomInUse
            | UnsupportedRoomVersion
            | IncompatibleRoomVersion { .. }
            | UnableToAuthoriseJoin
            | UnableToGrantJoin
            | InvalidRoomState
            | BadAlias
            | UnknownPos
            | DuplicateAnnotation
            | UnknownDevice
            | AppserviceLoginUnsupported
            | UrlNotSet => 400,
            NotFound | Unrecognized => 404,
            MethodNotAllowed => 405,
            Conflict => 409,
            TooLarge => 413,
            LimitExceeded { .. } => 429,
            Internal => 500,
            BadGateway | ConnectionFailed | BadStatus { .. } => 502,
            ConnectionTimeout => 504,
            StorageFull => 503,
        }
    }

    pub fn errcode(&self) -> &'static str {
        use ErrorKind::*;
        match self.kind {
            Forbidden => "M_FORBIDDEN",
            UnknownToken { .. } => "M_UNKNOWN_TOKEN",
            MissingToken => "M_MISSING_TOKEN",
            BadJson => "M_BAD_JSON",
            NotJson => "M_NOT_JSON",
            NotFound => "M_NOT_FOUND",
            LimitExceeded { .. } => "M_LIMIT_EXCEEDED",
            Unrecognized | MethodNotAllowed => "M_UNRECOGNIZED",
            TooLarge => "M_TOO_LARGE",
            InvalidParam => "M_INVALID_PARAM",
            MissingParam => "M_MISSING_PARAM",
            InvalidUsername => "M_INVALID_USERNAME",
            UserInUse => "M_USER_IN_USE",
            UserDeactivated => "M_USER_DEACTIVATED",
            GuestAccessForbidden => "M_GUEST_ACCESS_FORBIDDEN",
            UnknownPos => "M_UNKNOWN_POS",
            DuplicateAnnotation => "M_DUPLICATE_ANNOTATION",
            Exclusive => "M_EXCLUSIVE",
            WeakPassword => "M_WEAK_PASSWORD",
            RoomInUse => "M_ROOM_IN_USE",
            BadAlias => "M_BAD_ALIAS",
            UnsupportedRoomVersion => "M_UNSUPPORTED_ROOM_VERSION",
            IncompatibleRoomVersion { .. } => "M_INCOMPATIBLE_ROOM_VERSION",
            UnableToAuthoriseJoin => "M_UNABLE_TO_AUTHORISE_JOIN",
            UnableToGrantJoin => "M_UNABLE_TO_GRANT_JOIN",
            InvalidRoomState => "M_INVALID_ROOM_STATE",
            Uia(_) => "M_FORBIDDEN",
            Unauthorized => "M_UNAUTHORIZED",
            UnknownDevice => "M_UNKNOWN_DEVICE",
            AppserviceLoginUnsupported => "M_APPSERVICE_LOGIN_UNSUPPORTED",
            UrlNotSet => "M_URL_NOT_SET",
            ConnectionFailed => "M_CONNECTION_FAILED",
            ConnectionTimeout => "M_CONNECTION_TIMEOUT",
            BadStatus { .. } => "M_BAD_STATUS",
            Unknown | Internal | Conflict | StorageFull | UiaOperationChanged | BadGateway => "M_UNKNOWN",
        }
    }

    /// The JSON body sent to the client. Internal details never leave.
    pub fn body(&self) -> serde_json::Value {
        use serde_json::{json, Value};
        let message: &str = match self.kind {
            ErrorKind::Internal => "Internal server error",
            _ => &self.message,
        };
        let mut body = json!({ "errcode": self.errcode(), "error": message });
        match &self.kind {
            ErrorKind::UnknownToken { soft_logout } => {
                body["soft_logout"] = Value::Bool(*soft_logout);
            }
            ErrorKind::LimitExceeded { retry_after_ms } => {
                body["retry_after_ms"] = json!(retry_after_ms);
            }
            ErrorKind::IncompatibleRoomVersion { room_version } => {
                body["room_version"] = json!(room_version);
            }
            ErrorKind::BadStatus { status, body: answer } => {
                body["status"] = json!(status);
                body["body"] = json!(answer);
            }
            ErrorKind::Uia(uia) => {
                // A UIA answer is the flows object; errcode and error appear
                // only when a stage was attempted and failed.
                let mut out = (**uia).clone();
                if !self.message.is_empty() {
                    out["errcode"] = json!(self.errcode());
                    out["error"] = json!(message);
                }
                return out;
            }
            _ => {}
        }
        body
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.errcode(), self.message)
    }
}

impl std::error::Error for Error {}

impl From<rusqlite::Error> for Error {
    /// `SQLITE_FULL` (the disk is full, or the database reached its page
    /// cap) is [`ErrorKind::StorageFull`]; every other database error is
    /// internal. (`storage` also recognises an I/O error caused by
    /// `ENOSPC`, which needs the connection to tell.)
    fn from(e: rusqlite::Error) -> Error {
        if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull) {
            return Error::storage_full();
        }
        Error::internal(format!("database: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_detail_never_reaches_the_body() {
        let e = Error::internal("database: no such table: secrets");
        assert_eq!(e.status(), 500);
        assert_eq!(e.body()["errcode"], "M_UNKNOWN");
        assert!(!e.body().to_string().contains("secrets"));
    }

    #[test]
    fn a_full_disk_is_a_503_that_says_so() {
        let full = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
            Some("database or disk is full".into()),
        );
        let e = Error::from(full);
        assert_eq!((e.status(), e.errcode()), (503, "M_UNKNOWN"));
        assert_eq!(
            e.body(),
            serde_json::json!({ "errcode": "M_UNKNOWN", "error": "server storage is full" })
        );
        let other = Error::from(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CORRUPT),
            None,
        ));
        assert_eq!(other.kind, ErrorKind::Internal);
    }

    #[test]
    fn extra_fields_by_kind() {
        let e = Error::new(ErrorKind::UnknownToken { soft_logout: false }, "Unknown token");
        assert_eq!(e.status(), 401);
        assert_eq!(e.body()["soft_logout"], false);
        let e = Error::new(ErrorKind::LimitExceeded { retry_after_ms: 1500 }, "slow down");
        assert_eq!(e.status(), 429);
        assert_eq!(e.body()["retry_after_ms"], 1500);
        let e = Error::new(ErrorKind::IncompatibleRoomVersion { room_version: "9" }, "old");
        assert_eq!((e.status(), e.errcode()), (400, "M_INCOMPATIBLE_ROOM_VERSION"));
        assert_eq!(e.body()["room_version"], "9");
        let e = Error::new(ErrorKind::MethodNotAllowed, "no");
        assert_eq!((e.status(), e.errcode()), (405, "M_UNRECOGNIZED"));
    }

    #[test]
    fn uia_body_carries_flows_and_error_only_after_a_failed_stage() {
        let flows = serde_json::json!({"flows": [], "params": {}, "session": "s"});
        let fresh = Error::new(ErrorKind::Uia(Box::new(flows.clone())), "");
        assert_eq!(fresh.body(), flows);
        let failed = Error::new(ErrorKind::Uia(Box::new(flows)), "Invalid password");
        assert_eq!(failed.body()["errcode"], "M_FORBIDDEN");
        assert_eq!(failed.body()["session"], "s");
    }
}
