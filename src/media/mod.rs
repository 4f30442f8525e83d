//! Media logic that knows neither SQL nor HTTP: media ID grammar, which
//! content types may be served inline, the `Content-Disposition` value, and
//! thumbnails (`thumbnail.rs`).
//!
//! **Architecture Invariant:** nothing here touches storage or the wire;
//! `api::media` reads bytes through `storage::media` and hands them here.

pub mod thumbnail;

/// Longest media ID accepted (ours are `MEDIA_ID_LEN`).
pub const MEDIA_ID_MAX_BYTES: usize = 255;
/// Length of the media IDs this server makes.
pub const MEDIA_ID_LEN: usize = 24;
/// Longest `filename` (upload) and `Content-Type` kept.
pub const FILENAME_MAX_BYTES: usize = 255;
pub const CONTENT_TYPE_MAX_BYTES: usize = 255;

/// The policy the spec recommends for served content.
pub const CONTENT_SECURITY_POLICY: &str = "sandbox; default-src 'none'; script-src 'none'; \
     plugin-types application/pdf; style-src 'unsafe-inline'; object-src 'self';";

/// Content types that may be served `inline` (the spec's list); anything
/// else is an `attachment`.
const INLINE_SAFE: &[&str] = &[
    "text/css",
    "text/plain",
    "text/csv",
    "application/json",
    "application/ld+json",
    "image/jpeg",
    "image/gif",
    "image/png",
    "image/apng",
    "image/webp",
    "image/avif",
    "video/mp4",
    "video/webm",
    "video/ogg",
    "video/quicktime",
    "audio/mp4",
    "audio/webm",
    "audio/aac",
    "audio/mpeg",
    "audio/ogg",
    "audio/wave",
    "audio/wav",
    "audio/x-wav",
    "audio/x-pn-wav",
    "audio/flac",
    "audio/x-flac",
];

/// A media ID: 1 to 255 of `A-Z a-z 0-9 _ -` (the spec's sanitising rule,
/// which also keeps path tricks out).
pub fn is_valid_media_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MEDIA_ID_MAX_BYTES
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The media type without parameters, lower-cased: `Text/Plain; charset=x`
/// is `text/plain`.
pub fn essence(content_type: &str) -> String {
    content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase()
}

pub fn is_inline_safe(content_type: &str) -> bool {
    INLINE_SAFE.contains(&essence(content_type).as_str())
}

/// A `Content-Type` as uploaded, if it is one we can send back as given:
/// printable ASCII, `type/subtype`, bounded. Anything else is served as
/// `application/octet-stream`.
pub fn clean_content_type(given: Option<&str>) -> String {
    const FALLBACK: &str = "application/octet-stream";
    let Some(t) = given.map(str::trim) else {
        return FALLBACK.to_owned();
    };
    let printable = t.bytes().all(|b| (0x20..0x7f).contains(&b));
    if t.is_empty() || t.len() > CONTENT_TYPE_MAX_BYTES || !printable || !essence(t).contains('/') {
        return FALLBACK.to_owned();
    }
    t.to_owned()
}

/// The `Content-Disposition` value: `inline` for the safe types, else
/// `attachment`, with the file name if there is one. A plain ASCII name is
/// quoted (with `\` and `"` escaped); any other is given as RFC 5987
/// `filename*=utf-8''…` percent-encoding, which also keeps control
/// characters and line breaks out of the header.
pub fn content_disposition(content_type: &str, filename: Option<&str>) -> String {
    let kind = if is_inline_safe(content_type) { "inline" } else { "attachment" };
    let Some(name) = filename.filter(|n| !n.is_empty()) else {
        return kind.to_owned();
    };
    if name.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        let mut quoted = String::with_capacity(name.len() + 2);
        for c in name.chars() {
            if c == '"' || c == '\\' {
                quoted.push('\\');
            }
            quoted.push(c);
        }
        return format!("{kind}; filename=\"{quoted}\"");
    }
    let mut encoded = String::with_capacity(name.len() * 3);
    for b in name.bytes() {
        // RFC 5987 attr-char.
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            encoded.push(b as char);
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("{kind}; filename*=utf-8''{encoded}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_ids() {
        assert!(is_valid_media_id("AQwafuaFswefuhsfAFAgsw"));
        assert!(is_valid_media_id("a_b-c"));
        for bad in ["", "..", "a/b", "a%2Fb", "ä", "a b", &"a".repeat(256)] {
            assert!(!is_valid_media_id(bad), "{bad}");
        }
    }

    #[test]
    fn dispositions() {
        assert_eq!(content_disposition("image/png", Some("cat.png")), "inline; filename=\"cat.png\"");
        assert_eq!(content_disposition("IMAGE/PNG; x=y", None), "inline");
        assert_eq!(content_disposition("text/html", Some("a.html")), "attachment; filename=\"a.html\"");
        assert_eq!(content_disposition("image/svg+xml", None), "attachment");
        assert_eq!(
            content_disposition("text/plain", Some("say \"hi\"\\.txt")),
            "inline; filename=\"say \\\"hi\\\"\\\\.txt\""
        );
        assert_eq!(
            content_disposition("application/pdf", Some("résumé\r\n.pdf")),
            "attachment; filename*=utf-8''r%C3%A9sum%C3%A9%0D%0A.pdf"
        );
    }

    #[test]
    fn content_types() {
        assert_eq!(clean_content_type(Some("image/png")), "image/png");
        assert_eq!(clean_content_type(Some(" text/plain; charset=utf-8 ")), "text/plain; charset=utf-8");
        assert_eq!(clean_content_type(None), "application/octet-stream");
        assert_eq!(clean_content_type(Some("nonsense")), "application/octet-stream");
        assert_eq!(clean_content_type(Some("a/b\u{7}")), "application/octet-stream");
    }
}
