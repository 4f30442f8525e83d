//! The server's shared state, passed explicitly to every handler: the
//! configuration, the database, the signing key, the rate limiter, the
//! outbound client and the shutdown flag. There is no global service locator.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crate::config::Config;
use crate::crypto::sign::ServerKey;
use crate::hub::Hub;
use crate::ratelimit::RateLimiter;
use crate::storage::{self, server_keys, Db};

pub struct App {
    pub config: Config,
    pub db: Db,
    pub server_key: ServerKey,
    pub limiter: RateLimiter,
    /// Per origin server: `FEDERATION_PER_SECOND` and `FEDERATION_BURST`,
    /// or the client limits where those are higher.
    pub fed_limiter: RateLimiter,
    /// Parked long-polls, and where committed changes are announced.
    pub hub: Arc<Hub>,
    /// Typing notices and presence (in memory).
    pub ephemeral: crate::ephemeral::tables::Ephemeral,
    /// The member events each device was sent (lazy loading, in memory).
    pub sent_members: crate::sync::lazy::SentMembers,
    /// Sliding sync connections (in memory, bounded).
    pub sliding: crate::sync::conns::Connections,
    /// The one outbound HTTPS client (push gateways, federation).
    pub outbound: crate::outbound::client::Client,
    /// Signed requests to other servers (shared with the threads that
    /// ask several servers at once, which may outlive a request).
    pub federation: Arc<crate::federation::client::Federation>,
    /// Federation's in-memory tables (key fetches, failing servers, profiles).
    pub fed_memo: crate::federation::memo::Memo,
    /// Wakes the federation senders; a server that contacts us is reset.
    pub fed_queue: crate::outbound::queue::Queue,
    /// The application services (registration files; swapped on SIGHUP).
    pub appservices: crate::appservice::registry::Registry,
    /// The client for application services' configured URLs (which may be
    /// private addresses: the administrator named them).
    pub appservice_client: crate::outbound::client::Client,
    /// Wakes the application service pushers.
    pub appservice_queue: crate::outbound::queue::Queue,
    pub shutdown: AtomicBool,
}

impl App {
    /// Opens the database (creating it and the signing key on first start).
    pub fn open(config: Config) -> Result<App, String> {
        let appservices = crate::appservice::registry::Set::load(&config.appservice_config_files)?;
        let db = Db::open(&config.database)?;
        let server_key = load_or_create_key(&db)?;
        crate::appservice::registry::ensure_senders(&db, &appservices, &config.server_name)
            .map_err(|e| format!("registering the application services' senders: {}", e.message))?;
        let limiter = RateLimiter::new(config.rate_limit_per_second, config.rate_limit_burst);
        let fed_limiter = RateLimiter::new(
            crate::ratelimit::FEDERATION_PER_SECOND.max(config.rate_limit_per_second),
            crate::ratelimit::FEDERATION_BURST.max(config.rate_limit_burst),
        );
        let hub = Arc::new(Hub::new(config.max_parked_requests));
        // The change feed: every committed write tells the hub what it
        // changed, from whichever thread wrote.
        let sink = hub.clone();
        db.set_sink(Box::new(move |changes| sink.notify(changes)));
        let ephemeral = crate::ephemeral::tables::Ephemeral::new(config.presence);
        let outbound = crate::outbound::client::Client::from_config(&config)?;
        let federation = Arc::new(crate::federation::client::Federation::new(
            &config,
            server_key.clone(),
            outbound.clone(),
        ));
        let fed_queue = crate::outbound::queue::Queue::with_backoff(
            i64::try_from(config.federation_retry_min_ms).unwrap_or(i64::MAX),
            i64::try_from(config.federation_retry_max_ms).unwrap_or(i64::MAX),
        );
        let appservice_client = outbound.for_configured_hosts();
        Ok(App {
            appservices: crate::appservice::registry::Registry::new(appservices),
            appservice_client,
            appservice_queue: crate::outbound::queue::Queue::default(),
            config,
            db,
            server_key,
            limiter,
            fed_limiter,
            hub,
            ephemeral,
            sent_members: crate::sync::lazy::SentMembers::new(),
            sliding: crate::sync::conns::Connections::new(),
            outbound,
            federation,
            fed_memo: crate::federation::memo::Memo::new(),
            fed_queue,
            shutdown: AtomicBool::new(false),
        })
    }
}

/// The signing key is made once, on first start, and kept in the database:
/// other servers pin it, so it must survive restarts and restores. Loading
/// an existing key only reads (the server starts on a full disk); the write
/// that creates one checks again, in case another process made it first.
fn load_or_create_key(db: &Db) -> Result<ServerKey, String> {
    let shown = |e: crate::error::Error| format!("loading the signing key: {}", e.message);
    if let Some(stored) = db.read(|tx| server_keys::current(tx)).map_err(shown)? {
        return key_from(stored).map_err(shown);
    }
    let fresh = ServerKey::generate().map_err(|e| format!("no randomness for the signing key: {e}"))?;
    db.write(|tx| match server_keys::current(tx)? {
        Some(stored) => key_from(stored),
        None => {
            server_keys::insert(tx, fresh.key_id(), &fresh.seed(), storage::now_ms())?;
            Ok(fresh)
        }
    })
    .map_err(shown)
}

/// The key from its stored ID and seed.
fn key_from((key_id, seed): (String, Vec<u8>)) -> crate::error::Result<ServerKey> {
    let seed: [u8; 32] = seed
        .try_into()
        .map_err(|_| crate::error::Error::internal("stored signing key seed is not 32 bytes"))?;
    Ok(ServerKey::from_seed(&key_id, &seed))
}
