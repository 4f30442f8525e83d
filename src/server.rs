//! `hearth serve`: opens the database, binds the listener, runs the HTTP
//! worker pool, and shuts down cleanly on SIGTERM or SIGINT (stop taking
//! requests, let in-flight ones finish within a bound, checkpoint the WAL).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::app::App;
use crate::config::{Config, Registration};
use crate::{http, log};

/// In-flight requests get this long after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Runs the server until a shutdown signal; returns the process exit code.
pub fn run(config: Config) -> i32 {
    let signals = block_shutdown_signals();
    if config.registration == Registration::Open {
        log::warn(format_args!(
            "registration is open: anyone who can reach this server can create an account"
        ));
    }
    let listen = config.listen;
    let app = match App::open(config) {
        Ok(app) => Arc::new(app),
        Err(e) => {
            log::error(format_args!("cannot open the database: {e}"));
            return 1;
        }
    };
    let server = match tiny_http::Server::http(listen) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            log::error(format_args!("cannot listen on {listen}: {e}"));
            return 1;
        }
    };
    let bound = server.server_addr().to_ip().map(|a| a.to_string()).unwrap_or_else(|| listen.to_string());
    log::info(format_args!(
        "hearth {} serving {} on http://{bound} (database {}, {} workers)",
        env!("CARGO_PKG_VERSION"),
        app.config.server_name,
        app.db.path().display(),
        app.config.workers
    ));
    {
        let app = app.clone();
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || wait_for_shutdown(&app, signals))
            .expect("spawning the signal thread");
    }
    http::serve(app.clone(), server);
    if let Err(e) = app.db.checkpoint() {
        log::warn(format_args!("final WAL checkpoint failed: {}", e.message));
    }
    log::info(format_args!("shut down cleanly"));
    0
}

/// Blocks SIGINT and SIGTERM in this thread and every thread it spawns
/// afterwards, so only the signal thread's `sigwait` receives them.
fn block_shutdown_signals() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data that sigemptyset initialises; the calls
    // only read and write the set we own.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

fn wait_for_shutdown(app: &App, signals: libc::sigset_t) {
    let mut sig: libc::c_int = 0;
    // SAFETY: `signals` is an initialised set and `sig` a valid out pointer.
    unsafe { libc::sigwait(&signals, &mut sig) };
    log::info(format_args!("signal {sig} received: finishing in-flight requests"));
    app.shutdown.store(true, Ordering::SeqCst);
    // If requests do not finish in time, leave anyway: every acknowledged
    // write is already committed and synced.
    std::thread::sleep(SHUTDOWN_GRACE);
    log::warn(format_args!("in-flight requests did not finish within {SHUTDOWN_GRACE:?}; exiting"));
    std::process::exit(0);
}
