//! The federation sender: `PUT /_matrix/federation/v1/send/{txnId}` to
//! other servers, the federation kind of the shared outbound machinery
//! (`outbound::queue`).
//!
//! What goes to another server is written to `federation_outbox` in the
//! transaction of what it carries (a PDU, an EDU), so nothing is sent that
//! was not stored and nothing stored is lost. That commit wakes the
//! senders through the change feed (`Changes::federation`). A sender
//! claims a destination (one transaction in flight per destination),
//! takes its oldest rows into a transaction — at most [`PDUS_MAX`] PDUs
//! and [`EDUS_MAX`] EDUs, marked with a new transaction ID in the same
//! write — and sends it. The destination's 200 deletes those rows; any
//! failure (no answer, a 5xx, 429) keeps them and their ID, so the same
//! transaction goes again after the destination's backoff
//! (`federation_retry_min_ms` doubling up to `federation_retry_max_ms`),
//! also after a restart. A request from that server resets its backoff
//! (`http` calls `Queue::reset`). A destination that refuses the
//! transaction outright (another 4xx) or that may no longer be talked to
//! (`federation`, `federation_domain_allowlist`) has it dropped, logged:
//! resending cannot change a refusal. Typing notices that waited too long
//! to be taken into a transaction are dropped instead
//! (`edu_ephemeral::drop_stale_typing`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};

use crate::app::App;
use crate::error::Result;
use crate::log;
use crate::outbound::client::{Client, Method};
use crate::outbound::queue::{self, Delivery, Kind};
use crate::storage::{self, federation as fed_store, federation::OutTxn};

/// PDUs per transaction (the spec's limit).
pub const PDUS_MAX: usize = 50;
/// EDUs per transaction (the spec's limit).
pub const EDUS_MAX: usize = 100;
/// Sender threads: a slow destination holds up at most one of them.
pub const SENDERS: usize = 2;
/// Most bytes of a destination's answer read.
const ANSWER_MAX: u64 = 1024 * 1024;

/// Starts the sender threads. Called once by the server.
pub fn start(app: Arc<App>) {
    let queue = app.fed_queue.clone();
    let poked = queue.clone();
    app.hub.subscribe(Box::new(move |c| {
        if c.federation {
            poked.poke();
        }
    }));
    crate::federation::edu_devices::start(app.clone());
    let client = app.outbound.clone();
    queue::spawn(Arc::new(Transactions { app, serial: AtomicU64::new(0) }), client, queue, SENDERS);
}

/// How a destination answered a transaction.
#[derive(Debug)]
pub enum Outcome {
    /// 200: acknowledged.
    Acknowledged,
    /// Refused for good (a 4xx other than 408/429) or not to be sent.
    Dropped(String),
}

struct Transactions {
    app: Arc<App>,
    /// Makes transaction IDs made in the same millisecond differ.
    serial: AtomicU64,
}

impl Transactions {
    fn new_txn_id(&self) -> String {
        format!("{}.{}", storage::now_ms(), self.serial.fetch_add(1, Ordering::Relaxed))
    }
}

impl Kind for Transactions {
    type Item = OutTxn;
    type Answer = Outcome;
    const NAME: &'static str = "federation";

    fn due_destinations(&self, _now_ms: i64, limit: usize) -> Result<Vec<String>> {
        self.app.db.read(|tx| fed_store::outbox_destinations(tx, limit))
    }

    fn next_due_after(&self, _now_ms: i64) -> Result<Option<i64>> {
        // Rows are due as soon as they are queued (the commit pokes);
        // destinations backing off are timed by the queue.
        Ok(None)
    }

    fn load(&self, destination: &str, _now_ms: i64, _limit: usize) -> Result<Vec<OutTxn>> {
        let txn_id = self.new_txn_id();
        let txn = self.app.db.write(|tx| {
            // Typing that waited this long would arrive after it ran out.
            crate::federation::edu_ephemeral::drop_stale_typing(tx, destination, storage::now_ms())?;
            fed_store::next_txn(tx, destination, &txn_id, PDUS_MAX, EDUS_MAX)
        })?;
        Ok(txn.into_iter().collect())
    }

    fn send(&self, _client: &Client, txn: &OutTxn) -> Delivery<Outcome> {
        let fed = &self.app.federation;
        if !fed.allowed(&txn.destination) {
            return Delivery::Answered(Outcome::Dropped("federation with it is not allowed".to_owned()));
        }
        let parse = |rows: &[String]| -> Vec<Value> {
            rows.iter().filter_map(|r| serde_json::from_str(r).ok()).collect()
        };
        let body = json!({
            "origin": fed.server_name(),
            "origin_server_ts": storage::now_ms(),
            "pdus": parse(&txn.pdus),
            "edus": parse(&txn.edus),
        });
        let uri = format!("/_matrix/federation/v1/send/{}", crate::util::percent_encode(&txn.txn_id));
        match fed.request(Method::Put, &txn.destination, &uri, Some(&body), ANSWER_MAX) {
            Ok(a) if a.status == 200 => Delivery::Answered(Outcome::Acknowledged),
            Ok(a) if (400..500).contains(&a.status) && a.status != 408 && a.status != 429 => {
                let why = String::from_utf8_lossy(&a.body[..a.body.len().min(200)]).into_owned();
                Delivery::Answered(Outcome::Dropped(format!("{} {why}", a.status)))
            }
            Ok(a) => Delivery::Failed(crate::error::Error::new(
                crate::error::ErrorKind::BadGateway,
                format!("{} answered {}", txn.destination, a.status),
            )),
            Err(e) => Delivery::Failed(e),
        }
    }

    fn record(&self, outcomes: Vec<(OutTxn, Delivery<Outcome>)>) -> Result<()> {
        let done: Vec<&OutTxn> = outcomes
            .iter()
            .filter_map(|(txn, d)| match d {
                Delivery::Answered(Outcome::Acknowledged) => Some(txn),
                Delivery::Answered(Outcome::Dropped(why)) => {
                    log::warn(format_args!(
                        "federation: {} refused transaction {} ({} PDUs, {} EDUs), dropped: {why}",
                        txn.destination,
                        txn.txn_id,
                        txn.pdus.len(),
                        txn.edus.len()
                    ));
                    Some(txn)
                }
                Delivery::Nothing => None,
                Delivery::Failed(e) => {
                    log::info(format_args!(
                        "federation: transaction {} to {} failed, kept for a retry: {}",
                        txn.txn_id, txn.destination, e.message
                    ));
                    None
                }
            })
            .collect();
        if done.is_empty() {
            return Ok(());
        }
        self.app.db.write(|tx| {
            for txn in &done {
                fed_store::txn_done(tx, &txn.destination, &txn.txn_id)?;
            }
            Ok(())
        })
    }
}
