//! `hearth serve`: opens the database, binds the listener, runs the HTTP
//! worker pool, and shuts down cleanly on SIGTERM or SIGINT (stop taking
//! requests, let in-flight ones finish within a bound, checkpoint the WAL).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::app::App;
use crate::config::{Config, Registration};
use crate::http::reactor::Listener;
use crate::{http, log};

/// In-flight requests get this long after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Open files kept for everything but client connections: the database
/// and its WAL (on each connection), outbound requests, logs.
const FILES_RESERVED: u64 = 256;

/// Runs the server until a shutdown signal; returns the process exit code.
pub fn run(config: Config) -> i32 {
    tune_allocator();
    let signals = block_shutdown_signals();
    if config.registration == Registration::Open {
        log::warn(format_args!(
            "registration is open: anyone who can reach this server can create an account"
        ));
    }
    let mut config = config;
    let listen = config.listen;
    let plain = match std::net::TcpListener::bind(listen) {
        Ok(s) => s,
        Err(e) => {
            log::error(format_args!("cannot listen on {listen}: {e}"));
            return 1;
        }
    };
    // With port 0 the system picks the port; what clients are told
    // (`base_url`) must name the one actually bound.
    if let Ok(bound) = plain.local_addr() {
        config.listen = bound;
    }
    let app = match App::open(config) {
        Ok(app) => Arc::new(app),
        Err(e) => {
            log::error(format_args!("cannot open the database: {e}"));
            return 1;
        }
    };
    let bound = app.config.listen;
    let mut listeners = vec![Listener { sock: plain, tls: None }];
    // HTTPS (issue 8): the TLS listener, certificate from files or ACME;
    // bound before "serving" is logged.
    if app.config.tls_listen.is_some() {
        match start_https(&app) {
            Ok((sock, tls)) => listeners.push(Listener { sock, tls: Some(tls) }),
            Err(e) => {
                log::error(format_args!("{e}"));
                return 1;
            }
        }
    }
    let files = raise_open_files_limit();
    let connections = app.config.max_connections.min(files.saturating_sub(FILES_RESERVED) as usize);
    if connections < app.config.max_connections {
        log::warn(format_args!(
            "max_connections {} is above what {files} open files allow: serving at most {connections} connections",
            app.config.max_connections
        ));
    }
    let front = match http::reactor::Front::start(listeners, connections) {
        Ok(f) => f,
        Err(e) => {
            log::error(format_args!("cannot start the connection reactor: {e}"));
            return 1;
        }
    };
    log::info(format_args!("open files limit {files}: at most {connections} connections"));
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
    app.hub.start();
    crate::ephemeral::start(app.clone());
    crate::push::sender::start(app.clone());
    if app.config.federation {
        crate::federation::sender::start(app.clone());
        crate::federation::edu_ephemeral::start(app.clone());
    }
    http::serve(app.clone(), front);
    if let Err(e) = app.db.checkpoint() {
        log::warn(format_args!("final WAL checkpoint failed: {}", e.message));
    }
    log::info(format_args!("shut down cleanly"));
    0
}

/// Binds `tls_listen` and loads its certificate as configured (files,
/// watched; or ACME); the caller serves the listener. Errors (a port in
/// use, unreadable certificate files, ACME misconfiguration) stop the
/// server from starting.
fn start_https(app: &Arc<App>) -> Result<(std::net::TcpListener, Arc<crate::tls::Tls>), String> {
    let config = &app.config;
    let addr = config.tls_listen.ok_or("tls_listen is not set")?;
    let listener =
        std::net::TcpListener::bind(addr).map_err(|e| format!("cannot listen on {addr} for HTTPS: {e}"))?;
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    let tls = Tls::new();
    use crate::tls::{load_files, watch_files, Tls};
    match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => {
            load_files(&tls, cert, key)?;
            watch_files(tls.clone(), cert.clone(), key.clone());
        }
        _ if config.acme_enabled => crate::acme::start(app.clone(), tls.clone())?,
        _ => return Err("tls_listen needs tls_cert and tls_key, or acme_enabled".to_owned()),
    }
    log::info(format_args!("tls: listening on https://{bound}"));
    Ok((listener, tls))
}

/// Raises the soft open-files limit to the hard one (each connection is a
/// descriptor; the usual soft default of 1024 would cap connections far
/// below what the reactor holds) and returns the limit in force.
fn raise_open_files_limit() -> u64 {
    // SAFETY: getrlimit/setrlimit read and write the plain struct we own.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
        lim.rlim_cur as u64
    }
}

/// Keeps glibc's malloc from holding on to freed memory. By default glibc
/// raises its mmap threshold after a large block is freed, so each 19 MiB
/// argon2 buffer afterwards comes from a per-thread heap and stays resident:
/// a few dozen logins left the server at over 300 MiB. A fixed threshold
/// makes large buffers mmap'd and returned on free; two arenas bound the
/// per-thread heaps. (musl, for static builds, returns memory by itself.)
fn tune_allocator() {
    /// Allocations at least this large are mapped and unmapped on their own.
    const MMAP_THRESHOLD_BYTES: libc::c_int = 128 * 1024;
    /// Malloc arenas shared by all threads.
    const ARENAS_MAX: libc::c_int = 2;
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tunables; called before any
    // other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES);
        libc::mallopt(libc::M_ARENA_MAX, ARENAS_MAX);
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = (MMAP_THRESHOLD_BYTES, ARENAS_MAX);
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
        // SIGHUP reloads the TLS certificate (and prompts ACME) instead of
        // ending the process.
        libc::sigaddset(&mut set, libc::SIGHUP);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

/// Reads the registration files again; a bad one keeps the set in force.
fn reload_appservices(app: &App) {
    match crate::appservice::registry::Set::load(&app.config.appservice_config_files) {
        Ok(set) => {
            let n = set.all().len();
            if let Err(e) =
                crate::appservice::registry::ensure_senders(&app.db, &set, &app.config.server_name)
            {
                log::warn(format_args!("registering application service senders: {}", e.message));
            }
            app.appservices.replace(set);
            app.appservice_queue.poke();
            log::info(format_args!("application services reloaded: {n} registered"));
        }
        Err(e) => log::warn(format_args!("application services not reloaded, keeping the old set: {e}")),
    }
}

fn wait_for_shutdown(app: &App, signals: libc::sigset_t) {
    let mut sig: libc::c_int = 0;
    // SAFETY: `signals` is an initialised set and `sig` a valid out pointer.
    unsafe { libc::sigwait(&signals, &mut sig) };
    while sig == libc::SIGHUP {
        log::info(format_args!("SIGHUP received: reloading the TLS certificate and application services"));
        crate::tls::request_reload();
        reload_appservices(app);
        // SAFETY: as above.
        unsafe { libc::sigwait(&signals, &mut sig) };
    }
    log::info(format_args!("signal {sig} received: finishing in-flight requests"));
    app.shutdown.store(true, Ordering::SeqCst);
    // If requests do not finish in time, leave anyway: every acknowledged
    // write is already committed and synced.
    std::thread::sleep(SHUTDOWN_GRACE);
    log::warn(format_args!("in-flight requests did not finish within {SHUTDOWN_GRACE:?}; exiting"));
    std::process::exit(0);
}
