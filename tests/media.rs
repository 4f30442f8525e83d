//! The content repository through the real server (issue 6): uploads,
//! asynchronous uploads, downloads with their headers, thumbnails, limits,
//! the freeze of the unauthenticated endpoints, and `hearth media`.

mod common;

use std::io::Cursor;
use std::time::Duration;

use common::{assert_error, Server};
use serde_json::{json, Value};

const UPLOAD: &str = "/_matrix/media/v3/upload";
const CREATE: &str = "/_matrix/media/v1/create";
const MEDIA: &str = "/_matrix/client/v1/media";
const LEGACY: &str = "/_matrix/media/v3";

/// An answer with its body as bytes (media is binary).
struct Got {
    status: u16,
    headers: Vec<(String, String)>,
    bytes: Vec<u8>,
}

impl Got {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes).unwrap_or(Value::Null)
    }

    fn error(&self) -> (u16, Value) {
        (self.status, self.json())
    }
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new().timeout(Duration::from_secs(120)).build()
}

fn send(server: &Server, method: &str, path: &str, token: Option<&str>, body: Option<(&str, &[u8])>) -> Got {
    let mut rq = agent().request(method, &server.url(path));
    if let Some(t) = token {
        rq = rq.set("Authorization", &format!("Bearer {t}"));
    }
    let got = common::fed::exchange(rq, body);
    Got { status: got.status, headers: got.headers, bytes: got.body }
}

fn get(server: &Server, path: &str, token: Option<&str>) -> Got {
    send(server, "GET", path, token, None)
}

/// Uploads and returns (server name, media ID).
fn upload(
    server: &Server,
    token: &str,
    content_type: &str,
    bytes: &[u8],
    filename: Option<&str>,
) -> (String, String) {
    let path = match filename {
        Some(f) => format!("{UPLOAD}?filename={}", encode(f)),
        None => UPLOAD.to_owned(),
    };
    let got = send(server, "POST", &path, Some(token), Some((content_type, bytes)));
    assert_eq!(got.status, 200, "upload: {}", got.json());
    mxc(got.json()["content_uri"].as_str().expect("content_uri"))
}

fn mxc(uri: &str) -> (String, String) {
    let rest = uri.strip_prefix("mxc://").expect("an mxc:// URI");
    let (server, id) = rest.split_once('/').expect("server/id");
    (server.to_owned(), id.to_owned())
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Deterministic bytes that do not compress (so nothing can cheat).
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn image_bytes(w: u32, h: u32, format: image::ImageFormat) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x % 251) as u8, (y % 241) as u8, ((x + y) % 7) as u8])
    });
    let mut out = Vec::new();
    image::DynamicImage::ImageRgb8(img).write_to(&mut Cursor::new(&mut out), format).expect("encoding");
    out
}

fn dims(bytes: &[u8]) -> (u32, u32) {
    let img = image::load_from_memory(bytes).expect("a decodable thumbnail");
    (img.width(), img.height())
}

/// The server process's memory: `VmHWM` (peak resident set) and `VmRSS`, in KiB.
fn memory_kib(server: &Server) -> (u64, u64) {
    let pid = server_pid(server);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("reading /proc status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or_else(|| panic!("{name} in /proc/{pid}/status"))
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// The server's pid: the process whose command line names its database.
fn server_pid(server: &Server) -> u32 {
    let db = server.db().display().to_string();
    for entry in std::fs::read_dir("/proc").expect("/proc") {
        let Ok(entry) = entry else { continue };
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else { continue };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        if args.contains(&&b"serve"[..]) && args.contains(&db.as_bytes()) {
            return pid;
        }
    }
    panic!("no server process found for {db}");
}

fn stats(server: &Server) -> String {
    let (code, out, err) = server.hearth(&["media", "stats"], "");
    assert_eq!(code, 0, "{err}");
    out
}

/// The number after `label` in `hearth media stats`.
fn stat(out: &str, label: &str) -> i64 {
    out.lines()
        .find_map(|l| l.strip_prefix(label))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{label} in {out}"))
}

#[test]
fn upload_download_round_trip_with_headers() {
    let server = Server::start();
    let (_, token, _) = server.register("alice", "pw-alice-1");
    let bytes = b"hello, family \x00\xff binary".to_vec();
    let (origin, id) = upload(&server, &token, "text/plain", &bytes, Some("hello world.txt"));
    assert_eq!(origin, "localhost");
    assert!(id.len() >= 16 && id.bytes().all(|b| b.is_ascii_alphanumeric()), "{id}");

    let got = get(&server, &format!("{MEDIA}/download/{origin}/{id}"), Some(&token));
    assert_eq!(got.status, 200);
    assert_eq!(got.bytes, bytes);
    assert_eq!(got.header("content-type"), Some("text/plain"));
    assert_eq!(got.header("content-length"), Some(bytes.len().to_string().as_str()));
    assert_eq!(got.header("content-disposition"), Some("inline; filename=\"hello world.txt\""));
    let csp = got.header("content-security-policy").expect("CSP");
    assert!(csp.starts_with("sandbox; default-src 'none';"), "{csp}");
    assert_eq!(got.header("cross-origin-resource-policy"), Some("cross-origin"));
    assert!(got.header("cache-control").is_some_and(|c| c.contains("immutable")));
    assert_eq!(got.header("access-control-allow-origin"), Some("*"));

    // A file name in the path replaces the uploaded one.
    let got = get(&server, &format!("{MEDIA}/download/{origin}/{id}/other%20name.txt"), Some(&token));
    assert_eq!(got.header("content-disposition"), Some("inline; filename=\"other name.txt\""));
    assert_eq!(got.bytes, bytes);

    // Unsafe types are attachments; non-ASCII names are RFC 5987-encoded.
    let (_, html) =
        upload(&server, &token, "text/html", b"<script>alert(1)</script>", Some("p\u{e4}ge.html"));
    let got = get(&server, &format!("{MEDIA}/download/{origin}/{html}"), Some(&token));
    assert_eq!(got.header("content-type"), Some("text/html"));
    assert_eq!(got.header("content-disposition"), Some("attachment; filename*=utf-8''p%C3%A4ge.html"));

    // No name, no content type: attachment, application/octet-stream.
    let got = send(&server, "POST", UPLOAD, Some(&token), Some(("", b"raw")));
    assert_eq!(got.status, 200);
    let (_, raw) = mxc(got.json()["content_uri"].as_str().expect("uri"));
    let got = get(&server, &format!("{MEDIA}/download/{origin}/{raw}"), Some(&token));
    assert_eq!(got.header("content-type"), Some("application/octet-stream"));
    assert_eq!(got.header("content-disposition"), Some("attachment"));

    // An empty upload is content too.
    let (_, empty) = upload(&server, &token, "text/plain", b"", None);
    let got = get(&server, &format!("{MEDIA}/download/{origin}/{empty}"), Some(&token));
    assert_eq!((got.status, got.bytes.len()), (200, 0));

    // Identical bytes are stored once; each upload gets its own ID.
    let (_, again) = upload(&server, &token, "text/plain", &bytes, None);
    assert_ne!(again, id);
    let out = stats(&server);
    assert_eq!(stat(&out, "local media"), 5, "{out}");
    assert_eq!(stat(&out, "stored contents"), 4, "{out}");

    // HEAD answers the headers only.
    let got = send(&server, "HEAD", &format!("{MEDIA}/download/{origin}/{id}"), Some(&token), None);
    assert_eq!(got.status, 200);
    assert!(got.bytes.is_empty());

    // JSON answers keep their headers.
    let got = get(&server, &format!("{MEDIA}/config"), Some(&token));
    assert_eq!(got.header("content-type"), Some("application/json"));
    assert_eq!(got.json(), json!({ "m.upload.size": 52_428_800 }));
    let got = get(&server, &format!("{LEGACY}/config"), Some(&token));
    assert_eq!(got.json(), json!({ "m.upload.size": 52_428_800 }));
}

#[test]
fn authenticated_endpoints_refuse_anonymous_requests() {
    let server = Server::start();
    let (_, token, _) = server.register("bob", "pw-bob-1");
    let (origin, id) =
        upload(&server, &token, "image/png", &image_bytes(64, 64, image::ImageFormat::Png), None);
    for path in [
        format!("{MEDIA}/download/{origin}/{id}"),
        format!("{MEDIA}/download/{origin}/{id}/x.png"),
        format!("{MEDIA}/thumbnail/{origin}/{id}?width=32&height=32"),
        format!("{MEDIA}/config"),
        format!("{LEGACY}/config"),
    ] {
        assert_error(&get(&server, &path, None).error(), 401, "M_MISSING_TOKEN");
    }
    let got = send(&server, "POST", UPLOAD, None, Some(("text/plain", b"x")));
    assert_error(&got.error(), 401, "M_MISSING_TOKEN");
    let got = send(&server, "POST", CREATE, None, Some(("application/json", b"{}")));
    assert_error(&got.error(), 401, "M_MISSING_TOKEN");
    let got = get(&server, &format!("{MEDIA}/download/{origin}/{id}"), Some("not-a-token"));
    assert_error(&got.error(), 401, "M_UNKNOWN_TOKEN");
    // The connection and server are fine afterwards.
    assert_eq!(get(&server, &format!("{MEDIA}/download/{origin}/{id}"), Some(&token)).status, 200);
}

#[test]
fn remote_unknown_and_malformed_media_are_not_found() {
    // Without federation, other servers' media is not available (with it,
    // it is fetched: tests/federation_media.rs).
    let server = Server::start_with(&["--federation", "false"], &[]);
    let (_, token, _) = server.register("carol", "pw-carol-1");
    for path in [
        format!("{MEDIA}/download/matrix.org/AbCdEf123"),
        format!("{MEDIA}/thumbnail/matrix.org/AbCdEf123?width=32&height=32"),
        format!("{MEDIA}/download/localhost/NoSuchMedia"),
        format!("{MEDIA}/download/localhost/bad.id"),
        format!("{MEDIA}/download/not%20a%20server/abc"),
    ] {
        assert_error(&get(&server, &path, Some(&token)).error(), 404, "M_NOT_FOUND");
    }
}

#[test]
fn a_large_upload_streams_with_bounded_memory() {
    const SIZE: usize = 24 * 1024 * 1024;
    /// How much the server's peak RSS may grow: far below the file's size
    /// (page caches, one staging buffer, one chunk per download).
    const GROWTH_MAX_KIB: u64 = 16 * 1024;
    let server = Server::start();
    let (_, token, _) = server.register("dave", "pw-dave-1");
    // Warm up: connections, caches, a small upload and download.
    let (origin, small) = upload(&server, &token, "application/octet-stream", &noise(300_000, 1), None);
    assert_eq!(
        get(&server, &format!("{MEDIA}/download/{origin}/{small}"), Some(&token)).bytes.len(),
        300_000
    );
    let (peak_before, _) = memory_kib(&server);

    let bytes = noise(SIZE, 7);
    let (_, id) = upload(&server, &token, "video/mp4", &bytes, Some("film.mp4"));
    let (peak_after_upload, rss) = memory_kib(&server);
    assert!(
        peak_after_upload < peak_before + GROWTH_MAX_KIB,
        "upload: peak RSS grew from {peak_before} KiB to {peak_after_upload} KiB (now {rss} KiB)"
    );

    let got = get(&server, &format!("{MEDIA}/download/{origin}/{id}"), Some(&token));
    assert_eq!(got.status, 200);
    assert_eq!(got.bytes.len(), SIZE);
    assert!(got.bytes == bytes, "the downloaded bytes differ");
    assert_eq!(got.header("content-disposition"), Some("inline; filename=\"film.mp4\""));
    let (peak_after_download, rss) = memory_kib(&server);
    assert!(
        peak_after_download < peak_before + GROWTH_MAX_KIB,
        "download: peak RSS grew from {peak_before} KiB to {peak_after_download} KiB (now {rss} KiB)"
    );
    eprintln!("peak RSS: {peak_before} KiB, after upload {peak_after_upload} KiB, after download {peak_after_download} KiB");
    let out = stats(&server);
    assert_eq!(stat(&out, "partial uploads"), 0, "{out}");
}

#[test]
fn thumbnails_of_png_and_jpeg_crop_and_scale() {
    let server = Server::start();
    let (_, token, _) = server.register("erin", "pw-erin-1");
    let png = image_bytes(1000, 500, image::ImageFormat::Png);
    let jpeg = image_bytes(800, 600, image::ImageFormat::Jpeg);
    let (origin, png_id) = upload(&server, &token, "image/png", &png, Some("wide.png"));
    let (_, jpeg_id) = upload(&server, &token, "image/jpeg", &jpeg, Some("photo.jpg"));
    let thumb = |id: &str, query: &str| {
        get(&server, &format!("{MEDIA}/thumbnail/{origin}/{id}?{query}"), Some(&token))
    };

    // (request, expected type and dimensions)
    let cases = [
        (&png_id, "width=32&height=32&method=crop", "image/png", (32, 32)),
        (&png_id, "width=50&height=40&method=crop", "image/png", (96, 96)),
        (&png_id, "width=320&height=240&method=scale", "image/png", (320, 160)),
        (&png_id, "width=300&height=200", "image/png", (320, 160)),
        (&png_id, "width=640&height=480&method=scale", "image/png", (640, 320)),
        (&jpeg_id, "width=96&height=96&method=crop", "image/jpeg", (96, 96)),
        (&jpeg_id, "width=320&height=240&method=scale", "image/jpeg", (320, 240)),
        (&jpeg_id, "width=200&height=200&method=crop", "image/jpeg", (320, 240)),
        (&jpeg_id, "width=700&height=500&method=scale", "image/jpeg", (800, 600)),
    ];
    for (id, query, content_type, expected) in cases {
        let got = thumb(id, query);
        assert_eq!(got.status, 200, "{query}: {}", got.json());
        assert_eq!(got.header("content-type"), Some(content_type), "{query}");
        assert_eq!(dims(&got.bytes), expected, "{query}");
        let disposition = got.header("content-disposition").expect("disposition");
        assert!(disposition.starts_with("inline; filename=\"thumbnail."), "{disposition}");
        assert!(got.header("content-security-policy").is_some());
        // The second time it comes from the store, identical.
        assert_eq!(thumb(id, query).bytes, got.bytes, "{query}");
    }
    // Larger than every standard size, or an original no larger than the
    // size: the original itself, never upscaled.
    let got = thumb(&png_id, "width=1200&height=900&method=scale");
    assert_eq!((got.status, got.header("content-type")), (200, Some("image/png")));
    assert!(got.bytes == png);
    let small = image_bytes(20, 10, image::ImageFormat::Png);
    let (_, small_id) = upload(&server, &token, "image/png", &small, None);
    assert!(thumb(&small_id, "width=32&height=32&method=crop").bytes == small);

    // Stored once per standard size made: four of the PNG, three of the
    // JPEG (800 x 600 is the original itself).
    let out = stats(&server);
    assert_eq!(stat(&out, "thumbnails"), 7, "{out}");

    for bad in ["height=32", "width=32", "width=0&height=32", "width=-1&height=32", "width=a&height=3"] {
        let (status, body) = thumb(&png_id, bad).error();
        assert_eq!(status, 400, "{bad}: {body}");
    }
    assert_error(&thumb(&png_id, "width=32&height=32&method=stretch").error(), 400, "M_INVALID_PARAM");
    // animated=true: a still is fine (the spec allows it).
    assert_eq!(thumb(&png_id, "width=32&height=32&animated=true").status, 200);
}

#[test]
fn bad_image_data_fails_thumbnails_but_downloads() {
    let server = Server::start();
    let (_, token, _) = server.register("frank", "pw-frank-1");
    let junk = noise(5000, 3);
    let (origin, id) = upload(&server, &token, "image/png", &junk, None);
    let thumb =
        |id: &str| get(&server, &format!("{MEDIA}/thumbnail/{origin}/{id}?width=32&height=32"), Some(&token));
    assert_error(&thumb(&id).error(), 400, "M_UNKNOWN");
    let got = get(&server, &format!("{MEDIA}/download/{origin}/{id}"), Some(&token));
    assert_eq!((got.status, got.header("content-type")), (200, Some("image/png")));
    assert!(got.bytes == junk);

    // A truncated PNG.
    let mut cut = image_bytes(400, 400, image::ImageFormat::Png);
    cut.truncate(cut.len() / 2);
    let (_, cut_id) = upload(&server, &token, "image/png", &cut, None);
    assert_error(&thumb(&cut_id).error(), 400, "M_UNKNOWN");

    // Not an image type at all.
    let (_, text) = upload(&server, &token, "text/plain", b"just text", None);
    assert_error(&thumb(&text).error(), 400, "M_UNKNOWN");

    // A decompression bomb: a valid PNG header claiming 30000 x 30000.
    let (_, bomb) = upload(&server, &token, "image/png", &png_bomb(30_000, 30_000), None);
    assert_error(&thumb(&bomb).error(), 413, "M_TOO_LARGE");
    // The server is well.
    assert_eq!(get(&server, &format!("{MEDIA}/config"), Some(&token)).status, 200);
}

/// A PNG whose header claims `w` × `h` pixels, with almost no data.
fn png_bomb(w: u32, h: u32) -> Vec<u8> {
    fn crc32(data: &[u8]) -> u32 {
        let mut crc = 0xffff_ffffu32;
        for &b in data {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
            }
        }
        !crc
    }
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    for (kind, data) in [(b"IHDR", ihdr), (b"IDAT", vec![0x78, 0x9c, 0, 0, 0, 0]), (b"IEND", vec![])] {
        png.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut typed = kind.to_vec();
        typed.extend_from_slice(&data);
        png.extend_from_slice(&typed);
        png.extend_from_slice(&crc32(&typed).to_be_bytes());
    }
    png
}

#[test]
fn oversized_uploads_are_refused_and_nothing_is_stored() {
    let server = Server::start_with(&["--max-upload-bytes", "4096"], &[]);
    let (_, token, _) = server.register("gina", "pw-gina-1");
    assert_eq!(
        get(&server, &format!("{MEDIA}/config"), Some(&token)).json(),
        json!({ "m.upload.size": 4096 })
    );
    // Declared too large (Content-Length).
    let got = send(&server, "POST", UPLOAD, Some(&token), Some(("text/plain", &noise(10_000, 5))));
    assert_error(&got.error(), 413, "M_TOO_LARGE");
    // Too large without a declared length (chunked), found while reading.
    let reply = server.raw_chunked("POST", UPLOAD, Some(&token), noise(SPILL_PLUS, 6));
    assert_eq!((reply.status, reply.json["errcode"].as_str()), (413, Some("M_TOO_LARGE")), "{}", reply.text);
    // Exactly the limit is fine.
    let (origin, id) = upload(&server, &token, "text/plain", &noise(4096, 8), None);
    assert_eq!(get(&server, &format!("{MEDIA}/download/{origin}/{id}"), Some(&token)).bytes.len(), 4096);
    let out = stats(&server);
    assert_eq!(stat(&out, "local media"), 1, "{out}");
    assert_eq!(stat(&out, "stored contents"), 1, "{out}");
    assert_eq!(stat(&out, "partial uploads"), 0, "{out}");
}

/// Larger than one staging piece, so the refusal comes after some chunks
/// were written (and must remove them).
const SPILL_PLUS: usize = 1024 * 1024 + 10;

#[test]
fn a_chunked_upload_over_the_limit_leaves_nothing_after_staging() {
    let server = Server::start_with(&["--max-upload-bytes", "1048576"], &[]);
    let (_, token, _) = server.register("hank", "pw-hank-1");
    let reply = server.raw_chunked("POST", UPLOAD, Some(&token), noise(3 * 1024 * 1024, 9));
    assert_eq!((reply.status, reply.json["errcode"].as_str()), (413, Some("M_TOO_LARGE")), "{}", reply.text);
    let out = stats(&server);
    assert_eq!(stat(&out, "stored contents"), 0, "{out}");
    assert_eq!(stat(&out, "partial uploads"), 0, "{out}");
    // A chunked upload within the limit works.
    let bytes = noise(SPILL_PLUS - 20, 10);
    let reply = server.raw_chunked("POST", UPLOAD, Some(&token), bytes.clone());
    assert_eq!(reply.status, 200, "{}", reply.text);
    let (origin, id) = mxc(reply.json["content_uri"].as_str().expect("uri"));
    assert!(get(&server, &format!("{MEDIA}/download/{origin}/{id}"), Some(&token)).bytes == bytes);
}

#[test]
fn quota_limits_each_user() {
    let server = Server::start_with(&["--media-quota-bytes", "3000"], &[]);
    let (_, token, _) = server.register("ivy", "pw-ivy-1");
    let (_, other, _) = server.register("jack", "pw-jack-1");
    upload(&server, &token, "text/plain", &noise(2000, 1), None);
    let got = send(&server, "POST", UPLOAD, Some(&token), Some(("text/plain", &noise(2000, 2))));
    assert_error(&got.error(), 403, "M_FORBIDDEN");
    upload(&server, &other, "text/plain", &noise(2000, 2), None);
    let out = stats(&server);
    assert_eq!(stat(&out, "local media"), 2, "{out}");
}

#[test]
fn asynchronous_upload_create_then_put() {
    let server = Server::start();
    let (_, token, _) = server.register("kim", "pw-kim-1");
    let (_, other, _) = server.register("lee", "pw-lee-1");
    let before =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let (status, created) = server.post(CREATE, Some(&token), json!({}));
    assert_eq!(status, 200, "{created}");
    let expires = created["unused_expires_at"].as_i64().expect("unused_expires_at");
    assert!((before + 23 * 3_600_000..before + 25 * 3_600_000).contains(&expires), "{expires}");
    let (origin, id) = mxc(created["content_uri"].as_str().expect("content_uri"));

    let download = format!("{MEDIA}/download/{origin}/{id}");
    assert_error(&get(&server, &download, Some(&token)).error(), 504, "M_NOT_YET_UPLOADED");
    let put = format!("{UPLOAD}/{origin}/{id}?filename=note.ogg");
    let got = send(&server, "PUT", &put, Some(&other), Some(("audio/ogg", b"voice")));
    assert_error(&got.error(), 403, "M_FORBIDDEN");
    let got = send(&server, "PUT", &put, Some(&token), Some(("audio/ogg", b"voice note")));
    assert_eq!((got.status, got.json()), (200, json!({})));
    let got = send(&server, "PUT", &put, Some(&token), Some(("audio/ogg", b"again")));
    assert_error(&got.error(), 409, "M_CANNOT_OVERWRITE_MEDIA");
    let got = get(&server, &download, Some(&token));
    assert_eq!(got.bytes, b"voice note");
    assert_eq!(got.header("content-type"), Some("audio/ogg"));
    assert_eq!(got.header("content-disposition"), Some("inline; filename=\"note.ogg\""));

    // IDs that were never created, or of another server.
    let got = send(
        &server,
        "PUT",
        &format!("{UPLOAD}/{origin}/NeverCreated"),
        Some(&token),
        Some(("text/plain", b"x")),
    );
    assert_error(&got.error(), 404, "M_NOT_FOUND");
    let got = send(
        &server,
        "PUT",
        &format!("{UPLOAD}/elsewhere.org/{id}"),
        Some(&token),
        Some(("text/plain", b"x")),
    );
    assert_error(&got.error(), 404, "M_NOT_FOUND");

    // Pending IDs are bounded per user.
    let mut limited = None;
    for _ in 0..12 {
        let (status, body) = server.post(CREATE, Some(&other), json!({}));
        if status != 200 {
            limited = Some((status, body));
            break;
        }
    }
    assert_error(&limited.expect("a limit on pending uploads"), 429, "M_LIMIT_EXCEEDED");
}

#[test]
fn legacy_endpoints_are_frozen_by_default() {
    let server = Server::start();
    let (_, token, _) = server.register("max", "pw-max-1");
    let (origin, id) =
        upload(&server, &token, "image/png", &image_bytes(200, 100, image::ImageFormat::Png), None);
    for path in [
        format!("{LEGACY}/download/{origin}/{id}"),
        format!("{LEGACY}/thumbnail/{origin}/{id}?width=32&height=32"),
    ] {
        assert_error(&get(&server, &path, None).error(), 404, "M_NOT_FOUND");
        // A token does not lift the freeze of these endpoints.
        assert_error(&get(&server, &path, Some(&token)).error(), 404, "M_NOT_FOUND");
    }
    assert_eq!(get(&server, &format!("{MEDIA}/download/{origin}/{id}"), Some(&token)).status, 200);
}

#[test]
fn legacy_endpoints_serve_media_from_before_the_freeze() {
    // A freeze far in the future: everything counts as uploaded before it.
    let server = Server::start_with(&["--unauthenticated-media-before-ms", "32503680000000"], &[]);
    let (_, token, _) = server.register("nina", "pw-nina-1");
    let png = image_bytes(200, 100, image::ImageFormat::Png);
    let (origin, id) = upload(&server, &token, "image/png", &png, Some("cat.png"));
    for prefix in [LEGACY, "/_matrix/media/r0"] {
        let got = get(&server, &format!("{prefix}/download/{origin}/{id}"), None);
        assert_eq!(got.status, 200, "{prefix}");
        assert!(got.bytes == png);
        assert_eq!(got.header("content-disposition"), Some("inline; filename=\"cat.png\""));
        assert!(got.header("content-security-policy").is_some());
        let got = get(&server, &format!("{prefix}/download/{origin}/{id}/dog.png"), None);
        assert_eq!(got.header("content-disposition"), Some("inline; filename=\"dog.png\""));
        let got =
            get(&server, &format!("{prefix}/thumbnail/{origin}/{id}?width=32&height=32&method=crop"), None);
        assert_eq!((got.status, dims(&got.bytes)), (200, (32, 32)), "{prefix}");
    }
    // The freeze is by upload time: a frozen server refuses the same media.
    let frozen = Server::start_with(&["--unauthenticated-media-before-ms", "1"], &[]);
    let (_, token, _) = frozen.register("nina", "pw-nina-1");
    let (origin, id) = upload(&frozen, &token, "image/png", &png, None);
    assert_error(
        &get(&frozen, &format!("{LEGACY}/download/{origin}/{id}"), None).error(),
        404,
        "M_NOT_FOUND",
    );
}

#[test]
fn cli_media_stats_and_purge() {
    let server = Server::start();
    let (_, token, _) = server.register("olga", "pw-olga-1");
    let bytes = noise(600_000, 4);
    let (origin, a) = upload(&server, &token, "application/octet-stream", &bytes, None);
    let (_, b) = upload(&server, &token, "application/octet-stream", &bytes, None);
    let (_, png) =
        upload(&server, &token, "image/png", &image_bytes(300, 300, image::ImageFormat::Png), None);
    let got = get(
        &server,
        &format!("{MEDIA}/thumbnail/{origin}/{png}?width=32&height=32&method=crop"),
        Some(&token),
    );
    assert_eq!(got.status, 200);
    let (status, _) = server.post(CREATE, Some(&token), json!({}));
    assert_eq!(status, 200);

    let out = stats(&server);
    assert_eq!(stat(&out, "local media"), 3, "{out}");
    assert_eq!(stat(&out, "remote media"), 0, "{out}");
    assert_eq!(stat(&out, "awaiting upload"), 1, "{out}");
    assert_eq!(stat(&out, "stored contents"), 3, "{out}");
    assert_eq!(stat(&out, "thumbnails"), 1, "{out}");
    assert!(stat(&out, "media bytes") >= 1_200_000, "{out}");

    // Remote only: nothing here is remote.
    let (code, out, err) = server.hearth(&["media", "purge", "--older-than", "0", "--remote-only"], "");
    assert_eq!((code, out.trim()), (0, "purged 0 media, 0 stored contents, 0 bytes"), "{err}");
    // Not older than a day.
    let (code, out, _) = server.hearth(&["media", "purge", "--older-than", "1"], "");
    assert_eq!((code, out.trim()), (0, "purged 0 media, 0 stored contents, 0 bytes"));
    // Everything uploaded before now, with thumbnails and shared content.
    let (code, out, err) = server.hearth(&["media", "purge", "--older-than", "0"], "");
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("purged 3 media, 3 stored contents, "), "{out}");
    for id in [&a, &b, &png] {
        assert_error(
            &get(&server, &format!("{MEDIA}/download/{origin}/{id}"), Some(&token)).error(),
            404,
            "M_NOT_FOUND",
        );
    }
    let out = stats(&server);
    assert_eq!(stat(&out, "stored contents"), 0, "{out}");
    assert_eq!(stat(&out, "thumbnails"), 0, "{out}");
    // The pending ID has not expired, so it stays.
    assert_eq!(stat(&out, "awaiting upload"), 1, "{out}");

    let (code, _, err) = server.hearth(&["media", "purge", "--older-than", "x"], "");
    assert_eq!(code, 2, "{err}");
    let (code, out, _) = server.hearth(&["media", "--help"], "");
    assert_eq!(code, 0);
    assert!(out.contains("hearth media purge [--older-than DAYS] [--remote-only]"), "{out}");
}
