//! A small logger: one line per message on stderr, with a UTC timestamp and
//! a level. The level is set once at start. Callers must never pass secrets
//! (passwords, tokens); the access log in `http/` prints paths only.

use std::fmt::Arguments;
use std::io::Write;
use std::sync::atomic::{AtomicU8, Ordering};

pub const ERROR: u8 = 1;
pub const WARN: u8 = 2;
pub const INFO: u8 = 3;
pub const DEBUG: u8 = 4;
pub const TRACE: u8 = 5;

static LEVEL: AtomicU8 = AtomicU8::new(INFO);

pub fn set_level(level: u8) {
    LEVEL.store(level, Ordering::Relaxed);
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
    let name = match level {
        ERROR => "ERROR",
        WARN => "WARN",
        INFO => "INFO",
        DEBUG => "DEBUG",
        _ => "TRACE",
    };
    let line = format!("{} {name:5} {args}\n", timestamp(crate::storage::now_ms()));
    // One write call per line keeps lines whole across threads.
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
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
    #[test]
    fn timestamps() {
        assert_eq!(super::timestamp(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(super::timestamp(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(super::timestamp(1_795_314_600_000), "2026-11-22T02:30:00.000Z");
    }
}
