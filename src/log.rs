//! A small logger: one line per message on stderr, with a UTC timestamp and
//! a level. The level is set once at start. Callers must never pass secrets
//! (passwords, tokens); the access log in `http/` prints paths only.
//!
//! It also implements the `log` crate's facade ([`install`]), so records of
//! dependencies (tiny_http, rustls, ureq, mio) come out in the same format
//! and under the same level, named by their target, at most
//! [`DEP_LINES_PER_WINDOW`] per crate every [`DEP_WINDOW_MS`]: a peer that
//! makes a library warn on every packet cannot fill the disk.

use std::fmt::Arguments;
use std::io::Write;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;

pub const ERROR: u8 = 1;
pub const WARN: u8 = 2;
pub const INFO: u8 = 3;
pub const DEBUG: u8 = 4;
pub const TRACE: u8 = 5;

static LEVEL: AtomicU8 = AtomicU8::new(INFO);

pub fn set_level(level: u8) {
    LEVEL.store(level, Ordering::Relaxed);
    ::log::set_max_level(filter_of(level));
}

pub fn enabled(level: u8) -> bool {
    level <= LEVEL.load(Ordering::Relaxed)
}

pub fn error(args: Arguments) {
    write(ERROR, args)
}
pub fn warn(args: Arguments) {
    write(WARN, args)
}
pub fn info(args: Arguments) {
    write(INFO, args)
}
pub fn debug(args: Arguments) {
    write(DEBUG, args)
}

fn write(level: u8, args: Arguments) {
    if !enabled(level) {
        return;
    }
    emit(&line(crate::util::now_ms(), level, None, args));
}

/// One log line: timestamp, level, the target for a dependency's record,
/// the message, a newline.
fn line(now_ms: i64, level: u8, target: Option<&str>, args: Arguments) -> String {
    let name = match level {
        ERROR => "ERROR",
        WARN => "WARN",
        INFO => "INFO",
        DEBUG => "DEBUG",
        _ => "TRACE",
    };
    match target {
        Some(target) => format!("{} {name:5} {target}: {args}\n", timestamp(now_ms)),
        None => format!("{} {name:5} {args}\n", timestamp(now_ms)),
    }
}

fn emit(line: &str) {
    // One write call per line keeps lines whole across threads.
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// Most lines a dependency (one crate, by its target's first segment)
/// writes per [`DEP_WINDOW_MS`]; past it, one line says so and the rest of
/// the window is counted, then reported in one line when it next logs.
pub const DEP_LINES_PER_WINDOW: u32 = 10;
/// The rate limit's window for dependency records.
pub const DEP_WINDOW_MS: i64 = 60_000;
/// Crates tracked separately; the rest share one budget.
pub const DEP_TARGETS_MAX: usize = 32;
/// The budget name of the crates past [`DEP_TARGETS_MAX`].
const OTHER_TARGETS: &str = "(other)";

/// Installs the `log` facade, at the level set by [`set_level`]. Once per
/// process; a second call changes nothing.
pub fn install() {
    static FACADE: Facade = Facade;
    let _ = ::log::set_logger(&FACADE);
    ::log::set_max_level(filter_of(LEVEL.load(Ordering::Relaxed)));
}

/// Hearth's level for a `log` level (the same five, in the same order).
pub fn level_of(level: ::log::Level) -> u8 {
    match level {
        ::log::Level::Error => ERROR,
        ::log::Level::Warn => WARN,
        ::log::Level::Info => INFO,
        ::log::Level::Debug => DEBUG,
        ::log::Level::Trace => TRACE,
    }
}

/// The `log` filter that lets through what Hearth's `level` logs.
pub fn filter_of(level: u8) -> ::log::LevelFilter {
    match level {
        0 => ::log::LevelFilter::Off,
        ERROR => ::log::LevelFilter::Error,
        WARN => ::log::LevelFilter::Warn,
        INFO => ::log::LevelFilter::Info,
        DEBUG => ::log::LevelFilter::Debug,
        _ => ::log::LevelFilter::Trace,
    }
}

struct Facade;

static DEP_LIMIT: Mutex<RateLimit> = Mutex::new(RateLimit::new(DEP_LINES_PER_WINDOW, DEP_WINDOW_MS));

impl ::log::Log for Facade {
    fn enabled(&self, metadata: &::log::Metadata) -> bool {
        enabled(level_of(metadata.level()))
    }

    fn log(&self, record: &::log::Record) {
        let level = level_of(record.level());
        if !enabled(level) {
            return;
        }
        let now = crate::util::now_ms();
        let target = record.target();
        let verdict = crate::util::lock(&DEP_LIMIT).admit(target, now);
        if verdict.suppressed_before > 0 {
            let n = verdict.suppressed_before;
            emit(&line(now, WARN, Some(target), format_args!("{n} more lines were suppressed (rate limit)")));
        }
        match verdict.action {
            Action::Write => emit(&line(now, level, Some(target), *record.args())),
            Action::WriteLimitNotice => {
                let (max, secs) = (DEP_LINES_PER_WINDOW, DEP_WINDOW_MS / 1000);
                let notice = format_args!("more than {max} lines in {secs} s: suppressing the rest of them");
                emit(&line(now, WARN, Some(target), notice));
            }
            Action::Drop => {}
        }
    }

    fn flush(&self) {}
}

/// What to do with one dependency record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Verdict {
    /// Records of this crate suppressed in its previous window, to report
    /// before anything else (0: none).
    suppressed_before: u64,
    action: Action,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    /// Within the budget: write it.
    Write,
    /// The first past the budget: write that the rest are suppressed.
    WriteLimitNotice,
    /// Past the budget: count it only.
    Drop,
}

/// Per crate: at most `per_window` lines in each window of `window_ms`
/// (fixed windows starting at a crate's first record after the last one
/// ended).
struct RateLimit {
    per_window: u32,
    window_ms: i64,
    /// (crate, window start, lines written, records suppressed); at most
    /// [`DEP_TARGETS_MAX`] entries.
    crates: Vec<(String, i64, u32, u64)>,
}

impl RateLimit {
    const fn new(per_window: u32, window_ms: i64) -> RateLimit {
        RateLimit { per_window, window_ms, crates: Vec::new() }
    }

    fn admit(&mut self, target: &str, now_ms: i64) -> Verdict {
        let name = target.split("::").next().unwrap_or(target);
        let i = match self.crates.iter().position(|c| c.0 == name) {
            Some(i) => i,
            None => {
                let name = if self.crates.len() < DEP_TARGETS_MAX - 1 { name } else { OTHER_TARGETS };
                match self.crates.iter().position(|c| c.0 == name) {
                    Some(i) => i,
                    None => {
                        self.crates.push((name.to_owned(), now_ms, 0, 0));
                        self.crates.len() - 1
                    }
                }
            }
        };
        let (_, start, written, suppressed) = &mut self.crates[i];
        let mut suppressed_before = 0;
        if now_ms.saturating_sub(*start) >= self.window_ms || now_ms < *start {
            suppressed_before = std::mem::take(suppressed);
            *start = now_ms;
            *written = 0;
        }
        let action = if *written < self.per_window {
            *written += 1;
            Action::Write
        } else {
            *suppressed += 1;
            if *suppressed == 1 {
                Action::WriteLimitNotice
            } else {
                Action::Drop
            }
        };
        Verdict { suppressed_before, action }
    }
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` for a Unix time in milliseconds.
pub fn timestamp(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms.rem_euclid(1000)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_map_both_ways() {
        let pairs = [
            (::log::Level::Error, ERROR),
            (::log::Level::Warn, WARN),
            (::log::Level::Info, INFO),
            (::log::Level::Debug, DEBUG),
            (::log::Level::Trace, TRACE),
        ];
        for (theirs, ours) in pairs {
            assert_eq!(level_of(theirs), ours);
            // What Hearth's level logs, the facade lets through, no more.
            assert!(theirs <= filter_of(ours));
            if ours < TRACE {
                assert!(filter_of(ours) < ::log::LevelFilter::Trace);
            }
        }
        assert_eq!(filter_of(WARN), ::log::LevelFilter::Warn);
        assert_eq!(filter_of(0), ::log::LevelFilter::Off);
    }

    #[test]
    fn dependency_lines_name_their_target() {
        let l = line(0, WARN, Some("tiny_http"), format_args!("connection limit reached"));
        assert_eq!(l, "1970-01-01T00:00:00.000Z WARN  tiny_http: connection limit reached\n");
        let own = line(0, INFO, None, format_args!("listening"));
        assert_eq!(own, "1970-01-01T00:00:00.000Z INFO  listening\n");
    }

    #[test]
    fn rate_limit_per_crate_and_window() {
        let mut r = RateLimit::new(3, 1000);
        let write = Verdict { suppressed_before: 0, action: Action::Write };
        for _ in 0..3 {
            assert_eq!(r.admit("rustls::check", 0), write);
        }
        // The fourth says the rest are suppressed; later ones are counted.
        assert_eq!(
            r.admit("rustls::conn", 10),
            Verdict { suppressed_before: 0, action: Action::WriteLimitNotice }
        );
        for t in 11..20 {
            assert_eq!(r.admit("rustls", t), Verdict { suppressed_before: 0, action: Action::Drop });
        }
        // Another crate has its own budget.
        assert_eq!(r.admit("tiny_http", 20), write);
        // Next window: the count of the suppressed ones, then a fresh budget.
        assert_eq!(r.admit("rustls::check", 1000), Verdict { suppressed_before: 10, action: Action::Write });
        assert_eq!(r.admit("rustls::check", 1001), write);
        // A clock that went back starts a new window rather than none.
        assert_eq!(r.admit("rustls", 5), write);
    }

    #[test]
    fn rate_limit_table_is_bounded() {
        let mut r = RateLimit::new(1, 1000);
        for i in 0..100 {
            r.admit(&format!("crate{i}::m"), 0);
        }
        assert_eq!(r.crates.len(), DEP_TARGETS_MAX);
        // The crates past the bound share one budget.
        assert!(r.crates.iter().any(|c| c.0 == OTHER_TARGETS));
        assert_eq!(r.admit("crate99", 1).action, Action::Drop);
        assert_eq!(r.admit("crate0", 1).action, Action::WriteLimitNotice);
    }

    #[test]
    fn timestamps() {
        assert_eq!(timestamp(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(timestamp(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(timestamp(1_795_314_600_000), "2026-11-22T02:30:00.000Z");
    }
}
