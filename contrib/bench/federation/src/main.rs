//! Federation benchmark: the benchmark plays other Matrix servers (each a
//! name `127.0.0.1:PORT` with its own ed25519 key and TLS listener, a
//! certificate from a throwaway CA) against a real Hearth binary on a
//! fresh database, and measures three things of the Server-Server API:
//!
//! - `join`: a Hearth user joins a room of ~30,000 state events that a fake
//!   server is resident in (make_join / send_join v2); the wall time of the
//!   client's `/join`, Hearth's peak RSS growth, and that the room works at
//!   once (members listed, a message reaches the fake servers);
//! - `inbound`: a fake server sends transactions of 50 messages to Hearth,
//!   one in flight at a time; PDUs/s and transaction latency;
//! - `fanout`: 200 fake servers join a room on Hearth; the time until a
//!   message sent there has reached all of them.
//!
//! Each mode prints one JSON line with its figures. See README.md.
//!
//!     cargo run --release --manifest-path contrib/bench/federation/Cargo.toml -- join|inbound|fanout [options]

use std::path::{Path, PathBuf};
use std::time::Duration;

mod fake;
mod fanout;
mod inbound;
mod join;
mod room;
mod server;
mod tls;

pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

const USAGE: &str = "\
usage: hearth-bench-federation join|inbound|fanout [options]

  --hearth PATH        the Hearth binary (default: target/release/hearth of this checkout)
  --room-version V     the fake servers' room version, 3 to 12 (join, inbound; default 10)
  --servers N          fake servers (join: members spread over them, default 1; fanout: default 200)
  --members N          joined members of the room (join: default 28000; inbound: default 10)
  --transactions N     inbound: transactions sent (default 200)
  --pdus N             inbound: PDUs per transaction (default 50)
  --messages N         fanout: messages timed (default 5)
  --strace             inbound: count Hearth's fsync/fdatasync calls (strace -f -c)
  --keep               keep the run's directory (database, log, certificates)
";

/// The command line, parsed.
pub struct Options {
    pub mode: String,
    pub hearth: PathBuf,
    pub room_version: String,
    pub servers: Option<usize>,
    pub members: Option<usize>,
    pub transactions: usize,
    pub pdus: usize,
    pub messages: usize,
    pub strace: bool,
    pub keep: bool,
}

fn parse_args() -> Result<Options> {
    let mut args = std::env::args().skip(1);
    let mode = args.next().ok_or(USAGE)?;
    if !matches!(mode.as_str(), "join" | "inbound" | "fanout") {
        return Err(USAGE.into());
    }
    let default_bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../target/release/hearth");
    let mut o = Options {
        mode,
        hearth: default_bin,
        room_version: "10".into(),
        servers: None,
        members: None,
        transactions: 200,
        pdus: 50,
        messages: 5,
        strace: false,
        keep: false,
    };
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--hearth" => o.hearth = PathBuf::from(value()?),
            "--room-version" => o.room_version = value()?,
            "--servers" => o.servers = Some(value()?.parse()?),
            "--members" => o.members = Some(value()?.parse()?),
            "--transactions" => o.transactions = value()?.parse()?,
            "--pdus" => o.pdus = value()?.parse()?,
            "--messages" => o.messages = value()?.parse()?,
            "--strace" => o.strace = true,
            "--keep" => o.keep = true,
            "-h" | "--help" => return Err(USAGE.into()),
            _ => return Err(format!("unknown option {flag}\n{USAGE}").into()),
        }
    }
    if o.servers == Some(0) || o.pdus == 0 || o.transactions == 0 || o.messages == 0 {
        return Err("--servers, --pdus, --transactions and --messages must be at least 1".into());
    }
    Ok(o)
}

/// The room version asked for, one whose events this benchmark can build
/// (from v3: event IDs are hashes).
pub fn room_version(id: &str) -> Result<&'static hearth::core::room_version::RoomVersion> {
    let v = hearth::core::room_version::get(id).ok_or_else(|| format!("unknown room version {id}"))?;
    if v.event_id_in_event() {
        return Err(format!("room version {id} is not supported here (events carry their IDs)").into());
    }
    Ok(v)
}

/// A fresh directory for one run's database, log and certificates.
fn run_dir() -> Result<PathBuf> {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_nanos();
    let dir = std::env::temp_dir().join(format!("hearth-bench-federation-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// The value at quantile `q` (0 to 1) of `sorted`, nearest rank.
pub fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Milliseconds with a tenth's precision, for the JSON lines.
pub fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 10_000.0).round() / 10.0
}

/// Seconds with a millisecond's precision.
pub fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

fn run() -> Result<()> {
    let o = parse_args()?;
    if !o.hearth.is_file() {
        return Err(
            format!("no Hearth binary at {} (build it: cargo build --release)", o.hearth.display()).into()
        );
    }
    let dir = run_dir()?;
    eprintln!("run directory: {}", dir.display());
    let result = match o.mode.as_str() {
        "join" => join::run(&o, &dir),
        "inbound" => inbound::run(&o, &dir),
        _ => fanout::run(&o, &dir),
    };
    if o.keep || result.is_err() {
        eprintln!("kept {} (Hearth's log: hearth.log)", dir.display());
    } else {
        std::fs::remove_dir_all(&dir)?;
    }
    result
}

fn main() {
    if let Err(e) = run() {
        eprintln!("{e}");
        std::process::exit(1);
    }
}
