//! The route table: which handler serves which method and path, whether it
//! needs an access token, and whether it is rate limited.
//!
//! Patterns are written once without their prefix and mounted under each
//! prefix that serves them (`/_matrix/client/v3`, `/r0`, and the original
//! specification's `/api/v1` where the shapes match). A path that matches
//! some route under another method is a 405, one that matches none a 404.

use std::sync::OnceLock;

use crate::api::{self, client, Handler, PollHandler, RawHandler, UploadHandler};
use crate::error::{Error, ErrorKind, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Put,
    Delete,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthReq {
    /// No token looked at.
    None,
    /// A valid token of a full account: 401 without one, 403
    /// `M_GUEST_ACCESS_FORBIDDEN` for a guest's.
    Required,
    /// A valid token or 401; guests' too (the spec's guest access module,
    /// and what a guest needs to keep its session and read what it joined).
    Guests,
    /// A token is checked if given.
    Optional,
    /// An application service's `as_token` is recognised if given (its
    /// sender, no masquerading); any other token is not looked at:
    /// `/login` and `/register`, which clients call with stale tokens.
    Appservice,
    /// A federation request: a valid `X-Matrix` signature of another
    /// server, or 401 `M_UNAUTHORIZED`.
    Server,
}

/// How a route answers.
#[derive(Clone, Copy)]
pub enum Kind {
    /// At once.
    Plain(Handler),
    /// Possibly later: a long-poll the hub may park.
    LongPoll(PollHandler),
    /// At once, with bytes rather than JSON (media downloads).
    Raw(RawHandler),
    /// At once, reading its own body as it arrives (media uploads).
    Upload(UploadHandler),
}

pub struct Route {
    pub method: Method,
    segments: Vec<Segment>,
    pub handler: Kind,
    pub auth: AuthReq,
    pub rate_limited: bool,
    /// Under `/_matrix/federation` or `/_matrix/key`: not served when
    /// federation is off.
    pub federation: bool,
    /// A body limit other than `max_body_bytes` (federation transactions).
    pub body_max: Option<usize>,
}

enum Segment {
    Literal(String),
    /// `{name}`: a parameter.
    Param(String),
    /// `{name?}`: a parameter that may be empty (state keys).
    MaybeEmpty(String),
}

/// The current client-server prefixes.
const CLIENT: &[&str] = &["_matrix/client/v3", "_matrix/client/r0"];
/// The current prefixes and the original specification's.
const CLIENT_LEGACY: &[&str] = &["_matrix/client/v3", "_matrix/client/r0", "_matrix/client/api/v1"];
/// Endpoints the spec versions as v1.
const CLIENT_V1: &[&str] = &["_matrix/client/v1"];
/// Endpoints older clients still call under `/unstable` (cross-signing
/// uploads from before they were stable), besides the current prefixes.
const CLIENT_UNSTABLE: &[&str] = &["_matrix/client/v3", "_matrix/client/r0", "_matrix/client/unstable"];
const ROOT: &[&str] = &[""];
/// The federation API's versioned prefixes.
const FED_V1: &[&str] = &["_matrix/federation/v1"];
const FED_V2: &[&str] = &["_matrix/federation/v2"];
/// Simplified sliding sync's unstable prefix.
const SLIDING: &[&str] = &["_matrix/client/unstable/org.matrix.simplified_msc3575"];

fn table() -> Vec<Route> {
    use AuthReq::{Guests as Guest, None as Open, Required as Token, Server};
    use Method::*;
    let mut t = Vec::new();
    let mut add_kind = |prefixes: &[&str], method, pattern: &str, handler: Kind, auth, rate_limited| {
        for prefix in prefixes {
            let full = format!("{prefix}/{pattern}");
            let segments = full
                .split('/')
                .filter(|s| !s.is_empty())
                .map(|s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    Some(name) => match name.strip_suffix('?') {
                        Some(name) => Segment::MaybeEmpty(name.to_owned()),
                        None => Segment::Param(name.to_owned()),
                    },
                    None => Segment::Literal(s.to_owned()),
                })
                .collect();
            let bare = full.trim_start_matches('/');
            let federation = bare.starts_with("_matrix/federation/") || bare.starts_with("_matrix/key/");
            t.push(Route { method, segments, handler, auth, rate_limited, federation, body_max: None });
        }
    };
    let mut add = |prefixes: &[&str], method, pattern: &str, handler: Handler, auth, rate_limited| {
        add_kind(prefixes, method, pattern, Kind::Plain(handler), auth, rate_limited)
    };
    // Discovery and server facts.
    add(ROOT, Get, "_matrix/client/versions", client::versions::versions, Open, false);
    add(ROOT, Get, ".well-known/matrix/client", client::versions::well_known_client, Open, false);
    add(ROOT, Get, ".well-known/matrix/server", client::versions::well_known_server, Open, false);
    add(CLIENT, Get, "capabilities", client::versions::capabilities, Guest, false);
    add(CLIENT, Get, "thirdparty/protocols", client::versions::thirdparty_protocols, Token, false);
    add(ROOT, Get, "_matrix/key/v2/server", api::federation::keys::server_key, Open, false);
    add(ROOT, Get, "_matrix/key/v2/server/{keyId}", api::federation::keys::server_key, Open, false);
    add(ROOT, Get, "_matrix/key/v2/query/{serverName}", api::federation::keys::query_one, Open, true);
    add(ROOT, Post, "_matrix/key/v2/query", api::federation::keys::query, Open, true);
    // Federation (the Server-Server API): signed by the origin server.
    add(FED_V1, Get, "version", api::federation::version, Open, false);
    add(FED_V1, Put, "send/{txnId}", api::federation::send::send, Server, true);
    // Room reads by other servers.
    add(FED_V1, Get, "event/{eventId}", api::federation::rooms::event, Server, true);
    add(FED_V1, Get, "state/{roomId}", api::federation::rooms::state, Server, true);
    add(FED_V1, Get, "state_ids/{roomId}", api::federation::rooms::state_ids, Server, true);
    add(FED_V1, Get, "event_auth/{roomId}/{eventId}", api::federation::rooms::event_auth, Server, true);
    add(FED_V1, Get, "backfill/{roomId}", api::federation::rooms::backfill, Server, true);
    add(
        FED_V1,
        Post,
        "get_missing_events/{roomId}",
        api::federation::rooms::get_missing_events,
        Server,
        true,
    );
    add(FED_V1, Get, "timestamp_to_event/{roomId}", api::federation::rooms::timestamp_to_event, Server, true);
    // Federation queries.
    add(FED_V1, Get, "query/directory", api::federation::query::directory, Server, true);
    add(FED_V1, Get, "query/profile", api::federation::query::profile, Server, true);
    add(FED_V1, Get, "publicRooms", api::federation::public_rooms::list, Server, true);
    add(FED_V1, Post, "publicRooms", api::federation::public_rooms::list_filtered, Server, true);
    add(FED_V1, Get, "hierarchy/{roomId}", api::federation::hierarchy::hierarchy, Server, true);
    add(FED_V1, Get, "make_join/{roomId}/{userId}", api::federation::membership::make_join, Server, true);
    add(FED_V2, Put, "send_join/{roomId}/{eventId}", api::federation::membership::send_join, Server, true);
    add(FED_V1, Get, "make_leave/{roomId}/{userId}", api::federation::membership::make_leave, Server, true);
    add(FED_V2, Put, "send_leave/{roomId}/{eventId}", api::federation::membership::send_leave, Server, true);
    add(FED_V2, Put, "invite/{roomId}/{eventId}", api::federation::membership::invite, Server, true);
    add(FED_V1, Get, "make_knock/{roomId}/{userId}", api::federation::membership::make_knock, Server, true);
    add(FED_V1, Put, "send_knock/{roomId}/{eventId}", api::federation::membership::send_knock, Server, true);
    add(FED_V1, Get, "user/devices/{userId}", api::federation::user::devices, Server, true);
    add(FED_V1, Post, "user/keys/query", api::federation::user::keys_query, Server, true);
    add(FED_V1, Post, "user/keys/claim", api::federation::user::keys_claim, Server, true);
    // Sessions.
    add(CLIENT_LEGACY, Get, "login", client::login::flows, Open, false);
    add(CLIENT_LEGACY, Post, "login", client::login::login, AuthReq::Appservice, true);
    add(CLIENT, Post, "refresh", client::login::refresh, Open, true);
    add(CLIENT_LEGACY, Post, "logout", client::login::logout, Guest, false);
    add(CLIENT, Post, "logout/all", client::login::logout_all, Guest, false);
    add(CLIENT, Get, "account/whoami", client::login::whoami, Guest, false);
    // Accounts.
    add(CLIENT, Post, "register", client::register::register, AuthReq::Appservice, true);
    add(CLIENT, Get, "register/available", client::register::available, Open, true);
    add(
        CLIENT_V1,
        Get,
        "register/m.login.registration_token/validity",
        client::register::token_validity,
        Open,
        true,
    );
    add(CLIENT, Post, "account/password", client::account::change_password, Token, true);
    add(CLIENT, Post, "account/deactivate", client::account::deactivate, Token, true);
    // OpenID: a token proving who the user is to another service, and its
    // exchange, which needs no authentication but that token.
    add(CLIENT, Post, "user/{userId}/openid/request_token", client::openid::request_token, Token, true);
    add(ROOT, Get, "_matrix/federation/v1/openid/userinfo", api::federation::openid::userinfo, Open, true);
    // Devices.
    add(CLIENT, Get, "devices", client::devices::list, Guest, false);
    add(CLIENT, Get, "devices/{deviceId}", client::devices::get, Guest, false);
    add(CLIENT, Put, "devices/{deviceId}", client::devices::update, Guest, false);
    add(CLIENT, Delete, "devices/{deviceId}", client::devices::delete, Token, true);
    add(CLIENT, Post, "delete_devices", client::devices::delete_many, Token, true);
    // Rooms and membership.
    add(CLIENT, Post, "createRoom", client::rooms::create_room, Token, true);
    add(CLIENT, Post, "rooms/{roomId}/upgrade", client::rooms::upgrade, Token, true);
    add(CLIENT, Post, "join/{roomIdOrAlias}", client::membership::join_by_id_or_alias, Guest, true);
    add(CLIENT, Post, "knock/{roomIdOrAlias}", client::membership::knock, Token, true);
    add(CLIENT, Post, "rooms/{roomId}/join", client::membership::join, Guest, true);
    add(CLIENT, Post, "rooms/{roomId}/invite", client::membership::invite, Token, true);
    add(CLIENT, Post, "rooms/{roomId}/leave", client::membership::leave, Guest, true);
    add(CLIENT, Post, "rooms/{roomId}/forget", client::membership::forget, Token, false);
    add(CLIENT, Post, "rooms/{roomId}/kick", client::membership::kick, Token, true);
    add(CLIENT, Post, "rooms/{roomId}/ban", client::membership::ban, Token, true);
    add(CLIENT, Post, "rooms/{roomId}/unban", client::membership::unban, Token, true);
    add(CLIENT, Get, "joined_rooms", client::membership::joined_rooms, Guest, false);
    // Events and state.
    add(CLIENT, Put, "rooms/{roomId}/send/{eventType}/{txnId}", client::message::send, Guest, true);
    add(CLIENT_LEGACY, Post, "rooms/{roomId}/send/{eventType}", client::message::send_legacy, Token, true);
    add(CLIENT, Put, "rooms/{roomId}/state/{eventType}/{stateKey?}", client::message::put_state, Token, true);
    add(CLIENT, Put, "rooms/{roomId}/state/{eventType}", client::message::put_state, Token, true);
    add(CLIENT, Get, "rooms/{roomId}/state", client::message::get_state_all, Guest, false);
    add(
        CLIENT,
        Get,
        "rooms/{roomId}/state/{eventType}/{stateKey?}",
        client::message::get_state,
        Guest,
        false,
    );
    add(CLIENT, Get, "rooms/{roomId}/state/{eventType}", client::message::get_state, Guest, false);
    add(CLIENT, Put, "rooms/{roomId}/redact/{eventId}/{txnId}", client::message::redact, Token, true);
    add(CLIENT, Get, "rooms/{roomId}/event/{eventId}", client::message::get_event, Guest, false);
    add(CLIENT, Get, "rooms/{roomId}/members", client::message::members, Guest, false);
    add(CLIENT, Get, "rooms/{roomId}/joined_members", client::message::joined_members, Guest, false);
    add(CLIENT, Get, "rooms/{roomId}/context/{eventId}", client::message::context, Guest, false);
    add(CLIENT, Get, "rooms/{roomId}/messages", client::message::messages, Guest, false);
    add(CLIENT, Post, "search", client::search::search, Token, true);
    add(
        CLIENT_V1,
        Get,
        "rooms/{roomId}/timestamp_to_event",
        client::message::timestamp_to_event,
        Token,
        false,
    );
    // Relations and threads.
    add(CLIENT_V1, Get, "rooms/{roomId}/relations/{eventId}", client::relations::relations, Guest, false);
    add(
        CLIENT_V1,
        Get,
        "rooms/{roomId}/relations/{eventId}/{relType}",
        client::relations::relations,
        Guest,
        false,
    );
    add(
        CLIENT_V1,
        Get,
        "rooms/{roomId}/relations/{eventId}/{relType}/{eventType}",
        client::relations::relations,
        Guest,
        false,
    );
    add(CLIENT_V1, Get, "rooms/{roomId}/threads", client::relations::threads, Guest, false);
    // Sync.
    add(CLIENT, Post, "user/{userId}/filter", client::sync::create_filter, Guest, false);
    add(CLIENT, Get, "user/{userId}/filter/{filterId}", client::sync::get_filter, Guest, false);
    // Aliases and the room directory.
    add(CLIENT, Put, "directory/room/{roomAlias}", client::directory::put_alias, Token, false);
    add(CLIENT, Get, "directory/room/{roomAlias}", client::directory::get_alias, AuthReq::Optional, false);
    add(CLIENT, Delete, "directory/room/{roomAlias}", client::directory::delete_alias, Token, false);
    add(CLIENT, Get, "rooms/{roomId}/aliases", client::directory::room_aliases, Token, false);
    // Reporting content.
    add(CLIENT, Post, "rooms/{roomId}/report/{eventId}", client::report::report_event, Token, true);
    add(CLIENT, Post, "rooms/{roomId}/report", client::report::report_room, Token, true);
    add(CLIENT, Post, "users/{userId}/report", client::report::report_user, Token, true);
    // Spaces.
    add(CLIENT_V1, Get, "rooms/{roomId}/hierarchy", client::spaces::hierarchy, Token, true);
    add(CLIENT, Get, "publicRooms", client::directory::public_rooms, AuthReq::Optional, false);
    add(CLIENT, Post, "publicRooms", client::directory::public_rooms_filtered, Token, false);
    add(
        CLIENT,
        Get,
        "directory/list/room/{roomId}",
        client::directory::get_visibility,
        AuthReq::Optional,
        false,
    );
    add(CLIENT, Put, "directory/list/room/{roomId}", client::directory::set_visibility, Token, false);
    // Profiles and the user directory.
    add(CLIENT_LEGACY, Get, "profile/{userId}", client::profile::get_profile, AuthReq::Optional, false);
    add(
        CLIENT_LEGACY,
        Get,
        "profile/{userId}/displayname",
        client::profile::get_displayname,
        AuthReq::Optional,
        false,
    );
    add(CLIENT_LEGACY, Put, "profile/{userId}/displayname", client::profile::set_displayname, Guest, true);
    add(
        CLIENT_LEGACY,
        Get,
        "profile/{userId}/avatar_url",
        client::profile::get_avatar_url,
        AuthReq::Optional,
        false,
    );
    add(CLIENT_LEGACY, Put, "profile/{userId}/avatar_url", client::profile::set_avatar_url, Guest, true);
    add(CLIENT, Post, "user_directory/search", client::profile::user_directory_search, Token, false);
    // Account data and tags.
    add(CLIENT, Get, "user/{userId}/account_data/{type}", client::account_data::get_global, Guest, false);
    add(CLIENT, Put, "user/{userId}/account_data/{type}", client::account_data::put_global, Guest, false);
    add(
        CLIENT,
        Get,
        "user/{userId}/rooms/{roomId}/account_data/{type}",
        client::account_data::get_room,
        Guest,
        false,
    );
    add(
        CLIENT,
        Put,
        "user/{userId}/rooms/{roomId}/account_data/{type}",
        client::account_data::put_room,
        Guest,
        false,
    );
    add(CLIENT, Get, "user/{userId}/rooms/{roomId}/tags", client::account_data::get_tags, Guest, false);
    add(CLIENT, Put, "user/{userId}/rooms/{roomId}/tags/{tag}", client::account_data::put_tag, Token, false);
    add(
        CLIENT,
        Delete,
        "user/{userId}/rooms/{roomId}/tags/{tag}",
        client::account_data::delete_tag,
        Token,
        false,
    );
    add(CLIENT, Get, "voip/turnServer", client::voip::turn_server, Guest, false);
    // Typing, receipts, presence.
    add(CLIENT, Put, "rooms/{roomId}/typing/{userId}", client::ephemeral::typing, Guest, false);
    add(
        CLIENT,
        Post,
        "rooms/{roomId}/receipt/{receiptType}/{eventId}",
        client::ephemeral::receipt,
        Guest,
        false,
    );
    add(CLIENT, Post, "rooms/{roomId}/read_markers", client::ephemeral::read_markers, Guest, false);
    add(CLIENT_LEGACY, Get, "presence/{userId}/status", client::ephemeral::get_presence, Guest, false);
    add(CLIENT_LEGACY, Put, "presence/{userId}/status", client::ephemeral::set_presence, Guest, false);
    add(CLIENT_LEGACY, Get, "presence/list/{userId}", client::ephemeral::get_presence_list, Token, false);
    add(CLIENT_LEGACY, Post, "presence/list/{userId}", client::ephemeral::update_presence_list, Token, false);
    // The original specification's v1 surface.
    add(CLIENT_LEGACY, Get, "initialSync", client::legacy::initial_sync, Guest, false);
    add(CLIENT_LEGACY, Get, "rooms/{roomId}/initialSync", client::legacy::room_initial_sync, Guest, false);
    add(CLIENT_LEGACY, Get, "events/{eventId}", client::legacy::get_event, Guest, false);
    // Media (issue 6): uploads read their body as it arrives; downloads
    // answer bytes. Legacy unauthenticated media under /_matrix/media.
    {
        use crate::api::media;
        const MEDIA: &[&str] = &["_matrix/media/v3", "_matrix/media/r0"];
        const MEDIA_V1: &[&str] = &["_matrix/media/v1"];
        const CLIENT_MEDIA: &[&str] = &["_matrix/client/v1/media"];
        let (up, raw) = (Kind::Upload, Kind::Raw);
        add_kind(MEDIA, Post, "upload", up(media::upload), Token, false);
        add_kind(MEDIA, Put, "upload/{serverName}/{mediaId}", up(media::upload_to), Token, false);
        add_kind(MEDIA_V1, Post, "create", Kind::Plain(media::create), Token, true);
        add_kind(CLIENT_MEDIA, Get, "config", Kind::Plain(media::config), Guest, false);
        add_kind(CLIENT_MEDIA, Get, "download/{serverName}/{mediaId}", raw(media::download), Guest, false);
        add_kind(
            CLIENT_MEDIA,
            Get,
            "download/{serverName}/{mediaId}/{fileName}",
            raw(media::download),
            Guest,
            false,
        );
        add_kind(CLIENT_MEDIA, Get, "thumbnail/{serverName}/{mediaId}", raw(media::thumbnail), Guest, false);
        add_kind(MEDIA, Get, "config", Kind::Plain(media::config), Guest, false);
        add_kind(MEDIA, Get, "download/{serverName}/{mediaId}", raw(media::legacy_download), Open, false);
        add_kind(
            MEDIA,
            Get,
            "download/{serverName}/{mediaId}/{fileName}",
            raw(media::legacy_download),
            Open,
            false,
        );
        add_kind(MEDIA, Get, "thumbnail/{serverName}/{mediaId}", raw(media::legacy_thumbnail), Open, false);
    }
    // Federation media: the Server-Server API's content repository, this
    // server's own media as multipart/mixed. Here, after the last `add`
    // (which borrows `add_kind`), not beside `send`.
    {
        let raw = Kind::Raw;
        add_kind(
            FED_V1,
            Get,
            "media/download/{mediaId}",
            raw(api::federation::media::download),
            Server,
            true,
        );
        add_kind(
            FED_V1,
            Get,
            "media/thumbnail/{mediaId}",
            raw(api::federation::media::thumbnail),
            Server,
            true,
        );
    }
    // End-to-end encryption (issue 5): keys, cross-signing, to-device,
    // key backup. Dehydrated devices are not served (M_UNRECOGNIZED).
    {
        let p = Kind::Plain;
        add_kind(CLIENT, Post, "keys/upload", p(client::keys::upload), Guest, false);
        add_kind(CLIENT, Post, "keys/query", p(client::keys::query), Guest, false);
        add_kind(CLIENT, Post, "keys/claim", p(client::keys::claim), Guest, false);
        add_kind(CLIENT, Get, "keys/changes", p(client::keys::changes), Guest, false);
        add_kind(
            CLIENT_UNSTABLE,
            Post,
            "keys/device_signing/upload",
            p(client::keys::device_signing_upload),
            Token,
            true,
        );
        add_kind(
            CLIENT_UNSTABLE,
            Post,
            "keys/signatures/upload",
            p(client::keys::signatures_upload),
            Token,
            false,
        );
        add_kind(CLIENT, Put, "sendToDevice/{eventType}/{txnId}", p(client::to_device::send), Guest, true);
        add_kind(CLIENT, Post, "room_keys/version", p(client::key_backup::create_version), Token, false);
        add_kind(CLIENT, Get, "room_keys/version", p(client::key_backup::get_current_version), Token, false);
        add_kind(
            CLIENT,
            Get,
            "room_keys/version/{version}",
            p(client::key_backup::get_version),
            Token,
            false,
        );
        add_kind(
            CLIENT,
            Put,
            "room_keys/version/{version}",
            p(client::key_backup::update_version),
            Token,
            false,
        );
        add_kind(
            CLIENT,
            Delete,
            "room_keys/version/{version}",
            p(client::key_backup::delete_version),
            Token,
            false,
        );
        add_kind(CLIENT, Put, "room_keys/keys", p(client::key_backup::put_keys), Token, false);
        add_kind(CLIENT, Get, "room_keys/keys", p(client::key_backup::get_keys), Token, false);
        add_kind(CLIENT, Delete, "room_keys/keys", p(client::key_backup::delete_keys), Token, false);
        add_kind(CLIENT, Put, "room_keys/keys/{roomId}", p(client::key_backup::put_keys), Token, false);
        add_kind(CLIENT, Get, "room_keys/keys/{roomId}", p(client::key_backup::get_keys), Token, false);
        add_kind(CLIENT, Delete, "room_keys/keys/{roomId}", p(client::key_backup::delete_keys), Token, false);
        add_kind(
            CLIENT,
            Put,
            "room_keys/keys/{roomId}/{sessionId}",
            p(client::key_backup::put_keys),
            Token,
            false,
        );
        add_kind(
            CLIENT,
            Get,
            "room_keys/keys/{roomId}/{sessionId}",
            p(client::key_backup::get_keys),
            Token,
            false,
        );
        add_kind(
            CLIENT,
            Delete,
            "room_keys/keys/{roomId}/{sessionId}",
            p(client::key_backup::delete_keys),
            Token,
            false,
        );
    }
    // Push rules, pushers, notifications (issue 7).
    {
        let p = Kind::Plain;
        add_kind(CLIENT, Get, "pushrules", p(client::push::get_all), Guest, false);
        add_kind(CLIENT, Get, "pushrules/{scope?}", p(client::push::get_scope), Guest, false);
        add_kind(CLIENT, Get, "pushrules/global/{kind?}", p(client::push::get_kind), Token, false);
        add_kind(CLIENT, Get, "pushrules/global/{kind}/{ruleId}", p(client::push::get_rule), Token, false);
        add_kind(CLIENT, Put, "pushrules/global/{kind}/{ruleId}", p(client::push::put_rule), Token, false);
        add_kind(
            CLIENT,
            Delete,
            "pushrules/global/{kind}/{ruleId}",
            p(client::push::delete_rule),
            Token,
            false,
        );
        add_kind(
            CLIENT,
            Get,
            "pushrules/global/{kind}/{ruleId}/enabled",
            p(client::push::get_enabled),
            Token,
            false,
        );
        add_kind(
            CLIENT,
            Put,
            "pushrules/global/{kind}/{ruleId}/enabled",
            p(client::push::put_enabled),
            Token,
            false,
        );
        add_kind(
            CLIENT,
            Get,
            "pushrules/global/{kind}/{ruleId}/actions",
            p(client::push::get_actions),
            Token,
            false,
        );
        add_kind(
            CLIENT,
            Put,
            "pushrules/global/{kind}/{ruleId}/actions",
            p(client::push::put_actions),
            Token,
            false,
        );
        add_kind(CLIENT, Get, "pushers", p(client::push::get_pushers), Token, false);
        add_kind(CLIENT, Post, "pushers/set", p(client::push::set_pusher), Token, true);
        add_kind(CLIENT, Get, "notifications", p(client::push::notifications), Token, false);
    }
    // Long-polls (after the last `add`, which borrows `add_kind`).
    add_kind(CLIENT_LEGACY, Get, "events", Kind::LongPoll(client::legacy::events), Guest, false);
    add_kind(CLIENT, Get, "sync", Kind::LongPoll(client::sync::sync), Guest, false);
    // Simplified sliding sync (MSC4186), what Element X syncs with.
    add_kind(SLIDING, Post, "sync", Kind::LongPoll(client::sliding::sync), Token, false);
    // Bodies past `max_body_bytes`.
    for route in &mut t {
        if route.auth == AuthReq::Server
            && route.segments.iter().any(|s| matches!(s, Segment::Literal(l) if l == "send"))
        {
            route.body_max = Some(api::federation::send::BODY_MAX);
        }
    }
    t
}

fn routes() -> &'static [Route] {
    static ROUTES: OnceLock<Vec<Route>> = OnceLock::new();
    ROUTES.get_or_init(table)
}

/// Finds the route for `method` and the raw (still percent-encoded) `path`,
/// returning it with the decoded path parameters, by name.
pub fn find(method: Method, path: &str) -> Result<(&'static Route, Vec<(&'static str, String)>)> {
    let parts: Vec<&str> = path.split('/').skip(1).collect();
    let mut other_method = false;
    for route in routes() {
        if route.segments.len() != parts.len() {
            continue;
        }
        let matches = route.segments.iter().zip(&parts).all(|(seg, part)| match seg {
            Segment::Literal(l) => l == part,
            Segment::Param(_) => !part.is_empty(),
            Segment::MaybeEmpty(_) => true,
        });
        if !matches {
            continue;
        }
        if route.method != method {
            other_method = true;
            continue;
        }
        let params = route
            .segments
            .iter()
            .zip(&parts)
            .filter_map(|(seg, part)| match seg {
                Segment::Param(name) | Segment::MaybeEmpty(name) => {
                    Some((name.as_str(), super::percent_decode(part, false)))
                }
                Segment::Literal(_) => None,
            })
            .collect();
        return Ok((route, params));
    }
    if other_method {
        Err(Error::new(ErrorKind::MethodNotAllowed, "Method not allowed for this endpoint"))
    } else {
        Err(Error::new(ErrorKind::Unrecognized, "Unrecognized request"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_params_and_methods() {
        for p in ["/_matrix/client/v3/login", "/_matrix/client/r0/login", "/_matrix/client/api/v1/login"] {
            assert!(find(Method::Post, p).is_ok(), "{p}");
        }
        let (_, params) = find(Method::Get, "/_matrix/client/v3/devices/AB%20CD").unwrap();
        assert_eq!(params, [("deviceId", "AB CD".to_owned())]);
        let e = find(Method::Delete, "/_matrix/client/v3/login").err().unwrap();
        assert_eq!(e.status(), 405);
        let e = find(Method::Get, "/_matrix/client/v3/nothing/here").err().unwrap();
        assert_eq!((e.status(), e.errcode()), (404, "M_UNRECOGNIZED"));
        assert!(find(Method::Get, "/_matrix/client/v3/devices/").is_err());
        assert!(find(Method::Get, "/_matrix/client/v1/register/m.login.registration_token/validity").is_ok());
    }
}
