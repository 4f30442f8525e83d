//! Media over federation between two Hearth servers on the loopback bed
//! (tests/common/fed.rs), over real HTTPS: a user of A downloads and
//! thumbnails media uploaded on B; A keeps a copy and serves it with B
//! stopped; the federation endpoints answer well-formed multipart/mixed
//! (parsed here independently); the remote media cache's purge and cap;
//! unreachable, refused and too large origins; an older origin (the
//! deprecated endpoint) and a `Location` redirect, from a stand-in origin.
#![cfg(feature = "thumbnails")]

mod common;

use std::io::Cursor;
use std::time::Duration;

use common::ca::TestCa;
use common::fed::{self, part_header, FakeOrigin, Peer, RawAnswer};
use common::{assert_error, log_count, wait_until, Server, TempDir};
use serde_json::{json, Value};

const MEDIA: &str = "/_matrix/client/v1/media";
const FED_MEDIA: &str = "/_matrix/federation/v1/media";

fn bed() -> (TempDir, TestCa) {
    let dir = TempDir::new();
    let ca = TestCa::new(dir.path());
    (dir, ca)
}

/// A client request on the plain listener, its body as bytes.
fn client(
    server: &Server,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<(&str, &[u8])>,
) -> RawAnswer {
    let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(120)).build();
    let mut rq = agent.request(method, &server.url(path));
    if let Some(t) = token {
        rq = rq.set("Authorization", &format!("Bearer {t}"));
    }
    fed::exchange(rq, body)
}

fn get(server: &Server, path: &str, token: &str) -> RawAnswer {
    client(server, "GET", path, Some(token), None)
}

fn error(got: &RawAnswer) -> (u16, Value) {
    (got.status, got.json())
}

/// Uploads to `server` and returns the media ID.
fn upload(server: &Server, token: &str, content_type: &str, bytes: &[u8], filename: &str) -> String {
    let path = format!("/_matrix/media/v3/upload?filename={}", common::enc(filename));
    let got = client(server, "POST", &path, Some(token), Some((content_type, bytes)));
    assert_eq!(got.status, 200, "upload: {}", got.json());
    let uri = got.json()["content_uri"].as_str().expect("content_uri").to_owned();
    uri.rsplit('/').next().expect("a media ID").to_owned()
}

/// Deterministic bytes that do not compress, with CRLFs and dashes in
/// them (what a multipart delimiter is made of). Odd seeds differ.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out: Vec<u8> = (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    for i in (0..len.saturating_sub(4)).step_by(4099) {
        out[i..i + 4].copy_from_slice(b"\r\n--");
    }
    out
}

fn png(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x % 251) as u8, (y % 241) as u8, 7]));
    let mut out = Vec::new();
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
        .expect("png");
    out
}

fn dims(bytes: &[u8]) -> (u32, u32) {
    let img = image::load_from_memory(bytes).expect("a decodable image");
    (img.width(), img.height())
}

/// `hearth ARGS` on `peer`'s database, with its server name (which tells
/// its own media from other servers').
fn admin(peer: &Peer, args: &[&str]) -> (i32, String, String) {
    let mut all = args.to_vec();
    all.extend(["--server-name", peer.name.as_str()]);
    peer.server.hearth(&all, "")
}

/// The number after `label` in `hearth media stats`.
fn stat(peer: &Peer, label: &str) -> i64 {
    let (code, out, err) = admin(peer, &["media", "stats"]);
    assert_eq!(code, 0, "{err}");
    out.lines()
        .find_map(|l| l.strip_prefix(label))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{label} in {out}"))
}

/// Requests for `path` in `server`'s access log.
fn asked(server: &Server, path: &str) -> usize {
    log_count(server, &format!("GET {path} "))
}

#[test]
fn remote_media_is_fetched_once_kept_and_served_with_its_origin_down() {
    let (_dir, ca) = bed();
    let a = Peer::start(&ca, &["--workers", "8"], &[]);
    let mut b = Peer::start(&ca, &[], &[]);
    let (_, alice, _) = a.server.register("alice", "pw-alice-1");
    let (_, bob, _) = b.server.register("bob", "pw-bob-1");
    let pdf = noise(700_000, 1);
    let pdf_id = upload(&b.server, &bob, "application/pdf", &pdf, "résumé.pdf");
    let text = b"hello from B\r\n--not a boundary--\r\n".to_vec();
    let text_id = upload(&b.server, &bob, "text/plain; charset=utf-8", &text, "hello world.txt");

    // A's user downloads B's media through A: bytes, type and name kept.
    let path = format!("{MEDIA}/download/{}/{pdf_id}", b.name);
    let got = get(&a.server, &path, &alice);
    assert_eq!(got.status, 200, "{}", got.json());
    assert!(got.body == pdf, "the same bytes");
    assert_eq!(got.header("content-type"), Some("application/pdf"));
    let on_b = get(&b.server, &path, &bob);
    assert_eq!(got.header("content-disposition"), on_b.header("content-disposition"));
    assert_eq!(got.header("content-disposition"), Some("attachment; filename*=utf-8''r%C3%A9sum%C3%A9.pdf"));
    assert!(got.header("content-security-policy").is_some_and(|c| c.starts_with("sandbox")));
    assert_eq!(got.header("content-length"), Some("700000"));
    assert_eq!(asked(&b.server, &format!("{FED_MEDIA}/download/{pdf_id}")), 1);
    // A file name in the path names the download.
    let got = get(&a.server, &format!("{path}/other.pdf"), &alice);
    assert_eq!(
        (got.status, got.header("content-disposition")),
        (200, Some("attachment; filename=\"other.pdf\""))
    );
    assert_eq!(asked(&b.server, &format!("{FED_MEDIA}/download/{pdf_id}")), 1, "served from A's copy");

    // Four at once: one fetch from B, whichever comes first.
    let text_path = format!("{MEDIA}/download/{}/{text_id}", b.name);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..4).map(|_| s.spawn(|| get(&a.server, &text_path, &alice))).collect();
        for h in handles {
            let got = h.join().expect("a download");
            assert_eq!(got.status, 200, "{}", got.json());
            assert_eq!(got.body, text);
            assert_eq!(got.header("content-type"), Some("text/plain; charset=utf-8"));
            assert_eq!(got.header("content-disposition"), Some("inline; filename=\"hello world.txt\""));
        }
    });
    assert_eq!(
        asked(&b.server, &format!("{FED_MEDIA}/download/{text_id}")),
        1,
        "one fetch for four requests"
    );
    assert_eq!(stat(&a, "remote media"), 2);
    assert_eq!(stat(&a, "partial uploads"), 0);

    // A never serves its copies of B's media over federation.
    let uri = format!("{FED_MEDIA}/download/{pdf_id}");
    let agent = fed::agent(&ca);
    let got = fed::signed_raw(&agent, &b.signing_key(), &b.name, &a.name, &uri);
    assert_error(&error(&got), 404, "M_NOT_FOUND");
    // Nor over the frozen unauthenticated endpoints.
    let got =
        client(&a.server, "GET", &format!("/_matrix/media/v3/download/{}/{pdf_id}", b.name), None, None);
    assert_error(&error(&got), 404, "M_NOT_FOUND");

    // B is down: A serves its copies.
    b.server.terminate();
    for (id, bytes) in [(&pdf_id, &pdf), (&text_id, &text)] {
        let got = get(&a.server, &format!("{MEDIA}/download/{}/{id}", b.name), &alice);
        assert_eq!(got.status, 200, "{}", got.json());
        assert!(got.body == *bytes);
    }
    // What A never fetched is not there.
    let got = get(&a.server, &format!("{MEDIA}/download/{}/NotFetchedBefore", b.name), &alice);
    assert_error(&error(&got), 502, "M_UNKNOWN");
}

#[test]
fn thumbnails_across_servers() {
    let (_dir, ca) = bed();
    let a = Peer::start(&ca, &[], &[]);
    let mut b = Peer::start(&ca, &[], &[]);
    let (_, alice, _) = a.server.register("alice", "pw-alice-1");
    let (_, bob, _) = b.server.register("bob", "pw-bob-1");
    let id = upload(&b.server, &bob, "image/png", &png(300, 200), "cat.png");

    // Not cached: the origin's thumbnail, for this answer only.
    let thumb =
        |size: u32| format!("{MEDIA}/thumbnail/{}/{id}?width={size}&height={size}&method=crop", b.name);
    let got = get(&a.server, &thumb(32), &alice);
    assert_eq!(got.status, 200, "{}", got.json());
    assert_eq!(got.header("content-type"), Some("image/png"));
    assert_eq!(dims(&got.body), (32, 32));
    assert_eq!(got.header("content-disposition"), Some("inline; filename=\"thumbnail.png\""));
    assert_eq!(asked(&b.server, &format!("{FED_MEDIA}/thumbnail/{id}")), 1);
    assert_eq!(stat(&a, "remote media"), 0, "a remote thumbnail is not kept");
    wait_until(&a.server, "the fetched thumbnail dropped", || stat(&a, "partial uploads") == 0);
    let scaled = get(&a.server, &format!("{MEDIA}/thumbnail/{}/{id}?width=20&height=20", b.name), &alice);
    assert_eq!(scaled.status, 200);
    let (w, h) = dims(&scaled.body);
    assert!(w >= 20 && h >= 20 && w <= 320, "{w}x{h}");

    // Once the original is cached, A thumbnails it itself, B down or not.
    let got = get(&a.server, &format!("{MEDIA}/download/{}/{id}", b.name), &alice);
    assert_eq!(got.status, 200);
    b.server.terminate();
    for (size, want) in [(32, (32, 32)), (96, (96, 96))] {
        let got = get(&a.server, &thumb(size), &alice);
        assert_eq!(got.status, 200, "{}", got.json());
        assert_eq!(dims(&got.body), want);
    }
    // Bad parameters are refused before anything is fetched.
    let got = get(&a.server, &format!("{MEDIA}/thumbnail/{}/{id}?width=0&height=32", b.name), &alice);
    assert_error(&error(&got), 400, "M_INVALID_PARAM");
}

#[test]
fn the_federation_endpoints_answer_multipart() {
    let (_dir, ca) = bed();
    let a = Peer::start(&ca, &[], &[]);
    let b = Peer::start(&ca, &[], &[]);
    let off = Peer::start(&ca, &["--federation", "false"], &[]);
    let (_, bob, _) = b.server.register("bob", "pw-bob-1");
    let bytes = noise(300_000, 2);
    let id = upload(&b.server, &bob, "text/plain", &bytes, "hello world.txt");
    let image = upload(&b.server, &bob, "image/png", &png(200, 100), "dog.png");
    let agent = fed::agent(&ca);
    let key = a.signing_key();
    let fetch = |uri: &str| fed::signed_raw(&agent, &key, &a.name, &b.name, uri);

    let got = fetch(&format!("{FED_MEDIA}/download/{id}"));
    assert_eq!(got.status, 200, "{}", String::from_utf8_lossy(&got.body));
    let content_type = got.header("content-type").expect("a Content-Type").to_owned();
    assert_eq!(got.header("content-length"), Some(got.body.len().to_string().as_str()));
    let (preamble, parts, epilogue) = fed::parse_multipart(&content_type, &got.body);
    assert!(preamble.is_empty() && epilogue.is_empty());
    assert_eq!(parts.len(), 2, "exactly two parts");
    assert_eq!(part_header(&parts[0], "content-type"), Some("application/json"));
    assert_eq!(serde_json::from_slice::<Value>(&parts[0].1).expect("JSON metadata"), json!({}));
    assert_eq!(part_header(&parts[1], "content-type"), Some("text/plain"));
    assert_eq!(part_header(&parts[1], "content-disposition"), Some("inline; filename=\"hello world.txt\""));
    assert!(parts[1].1 == bytes, "the media's bytes");
    // Each answer its own boundary.
    let again = fetch(&format!("{FED_MEDIA}/download/{id}"));
    assert_ne!(again.header("content-type"), Some(content_type.as_str()));

    let got = fetch(&format!("{FED_MEDIA}/thumbnail/{image}?width=32&height=32&method=crop&animated=false"));
    assert_eq!(got.status, 200, "{}", String::from_utf8_lossy(&got.body));
    let (_, parts, _) = fed::parse_multipart(got.header("content-type").unwrap_or(""), &got.body);
    assert_eq!(parts.len(), 2);
    assert_eq!(part_header(&parts[1], "content-type"), Some("image/png"));
    assert_eq!(dims(&parts[1].1), (32, 32));
    let got = fetch(&format!("{FED_MEDIA}/thumbnail/{image}?height=32"));
    assert_error(&error(&got), 400, "M_MISSING_PARAM");
    let got = fetch(&format!("{FED_MEDIA}/thumbnail/{id}?width=32&height=32"));
    assert_error(&error(&got), 400, "M_UNKNOWN");

    // Unknown media, malformed IDs, IDs still waiting for their bytes.
    for uri in [
        format!("{FED_MEDIA}/download/NoSuchMedia"),
        format!("{FED_MEDIA}/download/bad.id"),
        format!("{FED_MEDIA}/thumbnail/NoSuchMedia?width=32&height=32"),
    ] {
        assert_error(&error(&fetch(&uri)), 404, "M_NOT_FOUND");
    }
    let (status, created) = b.server.post("/_matrix/media/v1/create", Some(&bob), json!({}));
    assert_eq!(status, 200, "{created}");
    let pending =
        created["content_uri"].as_str().and_then(|u| u.rsplit('/').next()).expect("an ID").to_owned();
    assert_error(&error(&fetch(&format!("{FED_MEDIA}/download/{pending}"))), 504, "M_NOT_YET_UPLOADED");

    // Not signed, signed badly: 401.
    let uri = format!("{FED_MEDIA}/download/{id}");
    assert_error(&error(&fed::get_raw(&agent, &b.name, &uri, &[])), 401, "M_UNAUTHORIZED");
    let forged = hearth::crypto::sign::ServerKey::from_seed(key.key_id(), &[9; 32]);
    let got = fed::signed_raw(&agent, &forged, &a.name, &b.name, &uri);
    assert_error(&error(&got), 401, "M_UNAUTHORIZED");
    // A server that does not federate has no such endpoint.
    let got = fed::signed_raw(&agent, &key, &a.name, &off.name, &uri);
    assert_error(&error(&got), 404, "M_UNRECOGNIZED");
}

#[test]
fn purging_remote_media_removes_the_cached_copy_only() {
    let (_dir, ca) = bed();
    let a = Peer::start(&ca, &[], &[]);
    let mut b = Peer::start(&ca, &[], &[]);
    let (_, alice, _) = a.server.register("alice", "pw-alice-1");
    let (_, bob, _) = b.server.register("bob", "pw-bob-1");
    let theirs = upload(&b.server, &bob, "application/octet-stream", &noise(400_000, 3), "x.bin");
    let ours = upload(&a.server, &alice, "application/octet-stream", &noise(100_000, 4), "y.bin");
    let path = format!("{MEDIA}/download/{}/{theirs}", b.name);
    assert_eq!(get(&a.server, &path, &alice).status, 200);
    assert_eq!((stat(&a, "remote media"), stat(&a, "local media")), (1, 1));

    let (code, out, err) = admin(&a, &["media", "purge", "--older-than", "0", "--remote-only"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "purged 1 media, 1 stored contents, 400000 bytes");
    assert_eq!((stat(&a, "remote media"), stat(&a, "local media")), (0, 1));
    b.server.terminate();
    assert_error(&error(&get(&a.server, &path, &alice)), 502, "M_UNKNOWN");
    let local = get(&a.server, &format!("{MEDIA}/download/{}/{ours}", a.name), &alice);
    assert_eq!(local.status, 200);
}

#[test]
fn the_cache_cap_evicts_the_least_recently_used() {
    let (_dir, ca) = bed();
    let a = Peer::start(&ca, &["--remote-media-cache-bytes", "700000"], &[]);
    let none = Peer::start(&ca, &["--remote-media-cache-bytes", "0"], &[]);
    let mut b = Peer::start(&ca, &[], &[]);
    let (_, alice, _) = a.server.register("alice", "pw-alice-1");
    let (_, carol, _) = none.server.register("carol", "pw-carol-1");
    let (_, bob, _) = b.server.register("bob", "pw-bob-1");
    let files: Vec<(String, Vec<u8>)> = [(300_000, 11), (300_000, 21), (300_000, 31), (800_000, 41)]
        .into_iter()
        .map(|(len, seed)| {
            let bytes = noise(len, seed);
            (upload(&b.server, &bob, "application/octet-stream", &bytes, "f.bin"), bytes)
        })
        .collect();
    let path = |id: &str| format!("{MEDIA}/download/{}/{id}", b.name);
    let fetch = |server: &Server, token: &str, i: usize| {
        let got = get(server, &path(&files[i].0), token);
        assert_eq!(got.status, 200, "{i}: {}", got.json());
        assert!(got.body == files[i].1, "{i}: the same bytes");
    };

    fetch(&a.server, &alice, 0);
    fetch(&a.server, &alice, 1);
    assert_eq!(stat(&a, "remote media"), 2);
    // The third passes the cap: the least recently used goes.
    fetch(&a.server, &alice, 2);
    assert_eq!(stat(&a, "remote media"), 2, "{}", a.server.log_text());
    assert!(a.server.log_text().contains("remote media cache: 1 media evicted"), "{}", a.server.log_text());
    // Larger than the whole cache: served, not kept.
    fetch(&a.server, &alice, 3);
    assert_eq!(stat(&a, "remote media"), 2);
    wait_until(&a.server, "the uncached copy dropped", || stat(&a, "partial uploads") == 0);
    // A cache of 0 keeps nothing.
    fetch(&none.server, &carol, 1);
    assert_eq!(stat(&none, "remote media"), 0);
    wait_until(&none.server, "the uncached copy dropped", || stat(&none, "partial uploads") == 0);

    b.server.terminate();
    fetch(&a.server, &alice, 1);
    fetch(&a.server, &alice, 2);
    for i in [0, 3] {
        assert_error(&error(&get(&a.server, &path(&files[i].0), &alice)), 502, "M_UNKNOWN");
    }
    assert_error(&error(&get(&none.server, &path(&files[1].0), &carol)), 502, "M_UNKNOWN");
}

#[test]
fn unreachable_refused_and_too_large_origins() {
    let (_dir, ca) = bed();
    let a = Peer::start(&ca, &[], &[]);
    let b = Peer::start(&ca, &[], &[]);
    let small = Peer::start(&ca, &["--max-upload-bytes", "2048"], &[]);
    let off = Peer::start(&ca, &["--federation", "false"], &[]);
    let others = Peer::start(&ca, &["--federation-domain-allowlist", "friends.example"], &[]);
    let (_, bob, _) = b.server.register("bob", "pw-bob-1");
    let id = upload(&b.server, &bob, "application/octet-stream", &noise(5000, 5), "five.bin");
    let download = format!("{MEDIA}/download/{}/{id}", b.name);
    let thumbnail = format!("{MEDIA}/thumbnail/{}/{id}?width=32&height=32", b.name);

    let (_, alice, _) = a.server.register("alice", "pw-alice-1");
    // Nobody listens there.
    let nowhere = format!("127.0.0.1:{}", fed::free_port());
    for path in [
        format!("{MEDIA}/download/{nowhere}/abc"),
        format!("{MEDIA}/thumbnail/{nowhere}/abc?width=8&height=8"),
    ] {
        assert_error(&error(&get(&a.server, &path, &alice)), 502, "M_UNKNOWN");
    }
    // The origin does not have it.
    let got = get(&a.server, &format!("{MEDIA}/download/{}/NoSuchMedia", b.name), &alice);
    assert_error(&error(&got), 404, "M_NOT_FOUND");
    // Larger than this server's max_upload_bytes: 502 M_TOO_LARGE, nothing kept.
    let (_, sam, _) = small.server.register("sam", "pw-sam-1");
    assert_error(&error(&get(&small.server, &download, &sam)), 502, "M_TOO_LARGE");
    assert_eq!(stat(&small, "remote media"), 0);
    assert_eq!(stat(&small, "partial uploads"), 0);
    // Federation off, or B outside the allowlist: not found, nothing asked.
    let before = asked(&b.server, &format!("{FED_MEDIA}/download/{id}"));
    for peer in [&off, &others] {
        let (_, token, _) = peer.server.register("olga", "pw-olga-1");
        for path in [&download, &thumbnail] {
            assert_error(&error(&get(&peer.server, path, &token)), 404, "M_NOT_FOUND");
        }
    }
    assert_eq!(asked(&b.server, &format!("{FED_MEDIA}/download/{id}")), before);
}

#[test]
fn an_older_origin_and_a_redirect() {
    let (_dir, ca) = bed();
    let a = Peer::start(&ca, &[], &[]);
    let (_, alice, _) = a.server.register("alice", "pw-alice-1");
    let h = |pairs: &[(&str, &str)]| {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>()
    };
    let origin = FakeOrigin::start(&ca, move |target, me| {
        let unrecognized = br#"{"errcode":"M_UNRECOGNIZED","error":"Unrecognized request"}"#.to_vec();
        let (path, _) = target.split_once('?').unwrap_or((target, ""));
        match path {
            "/_matrix/federation/v1/media/download/old" => {
                (404, h(&[("Content-Type", "application/json")]), unrecognized)
            }
            p if p.starts_with("/_matrix/media/v3/download/") && p.ends_with("/old") => (
                200,
                h(&[
                    ("Content-Type", "text/plain"),
                    ("Content-Disposition", "attachment; filename=\"old.txt\""),
                ]),
                b"from an older server".to_vec(),
            ),
            "/_matrix/federation/v1/media/download/moved" => {
                let body = format!(
                    "\r\n--b0\r\nContent-Type: application/json\r\n\r\n{{}}\r\n--b0\r\nLocation: https://{me}/cdn/moved\r\n\r\n\r\n--b0--\r\n"
                );
                (200, h(&[("Content-Type", "multipart/mixed; boundary=b0")]), body.into_bytes())
            }
            "/cdn/moved" => (
                200,
                h(&[
                    ("Content-Type", "image/gif"),
                    ("Content-Disposition", "inline; filename*=utf-8''m%C3%B6ved.gif"),
                ]),
                b"GIF89a moved bytes".to_vec(),
            ),
            "/_matrix/federation/v1/media/download/junk" => {
                (200, h(&[("Content-Type", "text/plain")]), b"not multipart".to_vec())
            }
            "/_matrix/federation/v1/media/download/gone" => (
                404,
                h(&[("Content-Type", "application/json")]),
                br#"{"errcode":"M_NOT_FOUND","error":"gone"}"#.to_vec(),
            ),
            _ => (500, Vec::new(), Vec::new()),
        }
    });
    let path = |id: &str| format!("{MEDIA}/download/{}/{id}", origin.name);

    // An older server: the deprecated endpoint, asked not to fetch further.
    let got = get(&a.server, &path("old"), &alice);
    assert_eq!(got.status, 200, "{}\n{}", got.json(), a.server.log_text());
    assert_eq!(got.body, b"from an older server");
    assert_eq!(got.header("content-type"), Some("text/plain"));
    assert_eq!(got.header("content-disposition"), Some("inline; filename=\"old.txt\""));
    let requests = origin.requests();
    assert_eq!(requests[0], "/_matrix/federation/v1/media/download/old", "{requests:?}");
    let legacy = &requests[1];
    assert!(legacy.starts_with("/_matrix/media/v3/download/127.0.0.1%3A"), "{legacy}");
    assert!(legacy.contains("allow_remote=false"), "{legacy}");

    // A Location part: followed with a plain GET, the target's headers kept.
    let got = get(&a.server, &path("moved"), &alice);
    assert_eq!(got.status, 200, "{}", got.json());
    assert_eq!(got.body, b"GIF89a moved bytes");
    assert_eq!(got.header("content-type"), Some("image/gif"));
    assert_eq!(got.header("content-disposition"), Some("inline; filename*=utf-8''m%C3%B6ved.gif"));
    assert!(origin.requests().iter().any(|r| r == "/cdn/moved"));
    // Cached like any other (the URL is not).
    let n = origin.requests().len();
    assert_eq!(get(&a.server, &path("moved"), &alice).status, 200);
    assert_eq!(origin.requests().len(), n);

    // A 404 that is the media's, not the endpoint's: no fallback.
    assert_error(&error(&get(&a.server, &path("gone"), &alice)), 404, "M_NOT_FOUND");
    assert!(!origin
        .requests()
        .iter()
        .any(|r| r.contains("/_matrix/media/v3/download/") && r.contains("/gone")));
    // A 200 that is not multipart: a failure to fetch.
    assert_error(&error(&get(&a.server, &path("junk"), &alice)), 502, "M_UNKNOWN");
    assert_eq!(stat(&a, "remote media"), 2);
}

/// A gate the stand-in origin's answers wait at until the test opens it.
#[derive(Default)]
struct Gate {
    open: std::sync::Mutex<bool>,
    opened: std::sync::Condvar,
}

impl Gate {
    fn wait(&self) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        while !*open {
            open = self.opened.wait(open).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn open(&self) {
        *self.open.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.opened.notify_all();
    }
}

#[test]
fn concurrent_requests_share_one_fetch_and_are_bounded() {
    let (_dir, ca) = bed();
    let gate = std::sync::Arc::new(Gate::default());
    let held = gate.clone();
    let origin = FakeOrigin::start(&ca, move |target, _| {
        held.wait();
        let id = target.rsplit('/').next().unwrap_or("");
        let body = format!(
            "--b1\r\nContent-Type: application/json\r\n\r\n{{}}\r\n--b1\r\nContent-Type: text/plain\r\n\r\nbytes of {id}\r\n--b1--\r\n"
        );
        (200, vec![("Content-Type".to_owned(), "multipart/mixed; boundary=b1".to_owned())], body.into_bytes())
    });
    let a = Peer::start(&ca, &["--workers", "8", "--log-level", "debug"], &[]);
    let (_, alice, _) = a.server.register("alice", "pw-alice-1");
    let path = format!("{MEDIA}/download/{}/slow", origin.name);

    // Four requests for the same media while the origin holds its answer:
    // one asks it, three wait for that fetch.
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..4).map(|_| s.spawn(|| get(&a.server, &path, &alice))).collect();
        common::wait_for_log(&a.server, "waiting for the fetch in progress", 3);
        gate.open();
        for h in handles {
            let got = h.join().expect("a download");
            assert_eq!(got.status, 200, "{}", got.json());
            assert_eq!(got.body, b"bytes of slow");
        }
    });
    assert_eq!(origin.requests(), ["/_matrix/federation/v1/media/download/slow"]);

    // With two workers, one request at a time may wait on another server.
    let gate = std::sync::Arc::new(Gate::default());
    let held = gate.clone();
    let origin = FakeOrigin::start(&ca, move |_, _| {
        held.wait();
        let body = "--b2\r\n\r\n{}\r\n--b2\r\nContent-Type: text/plain\r\n\r\nlate\r\n--b2--\r\n";
        (
            200,
            vec![("Content-Type".to_owned(), "multipart/mixed; boundary=b2".to_owned())],
            body.as_bytes().to_vec(),
        )
    });
    let two = Peer::start(&ca, &["--workers", "2"], &[]);
    let (_, bob, _) = two.server.register("bob", "pw-bob-1");
    std::thread::scope(|s| {
        let first = s.spawn(|| get(&two.server, &format!("{MEDIA}/download/{}/first", origin.name), &bob));
        wait_until(&two.server, "the origin is asked", || !origin.requests().is_empty());
        let second = get(&two.server, &format!("{MEDIA}/download/{}/second", origin.name), &bob);
        assert_error(&error(&second), 429, "M_LIMIT_EXCEEDED");
        // Everything else is served meanwhile.
        assert_eq!(client(&two.server, "GET", "/_matrix/client/versions", None, None).status, 200);
        gate.open();
        let first = first.join().expect("the first download");
        assert_eq!((first.status, first.body.as_slice()), (200, &b"late"[..]));
    });
    assert_eq!(get(&two.server, &format!("{MEDIA}/download/{}/second", origin.name), &bob).status, 200);
}
