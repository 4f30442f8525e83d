//! Media over federation against the reference server: a real Synapse
//! (tests/common/synapse.rs) and a Hearth on the same bed. Hearth reads
//! Synapse's multipart answers (downloads and thumbnails), and Synapse
//! reads Hearth's (it fetches whole files and thumbnails them itself).
#![cfg(feature = "thumbnails")]

mod common;

use std::io::Cursor;

use common::ca::TestCa;
use common::fed::{self, Peer, RawAnswer};
use common::synapse::Synapse;
use common::TempDir;

const MEDIA: &str = "/_matrix/client/v1/media";

fn bed() -> (TempDir, TestCa) {
    let dir = TempDir::new();
    let ca = TestCa::new(dir.path());
    (dir, ca)
}

/// A request to `url` (any server of the bed), its body as bytes.
fn send(agent: &ureq::Agent, method: &str, url: &str, token: &str, body: Option<(&str, &[u8])>) -> RawAnswer {
    fed::exchange(agent.request(method, url).set("Authorization", &format!("Bearer {token}")), body)
}

/// Uploads to the server at `base` (`https://…` or `http://…`); the media ID.
fn upload(
    agent: &ureq::Agent,
    base: &str,
    token: &str,
    content_type: &str,
    bytes: &[u8],
    name: &str,
) -> String {
    let url = format!("{base}/_matrix/media/v3/upload?filename={}", common::enc(name));
    let got = send(agent, "POST", &url, token, Some((content_type, bytes)));
    assert_eq!(got.status, 200, "upload: {}", got.json());
    let uri = got.json()["content_uri"].as_str().expect("content_uri").to_owned();
    uri.rsplit('/').next().expect("a media ID").to_owned()
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

#[test]
fn hearth_and_synapse_fetch_each_others_media() {
    let (_dir, ca) = bed();
    let hearth = Peer::start(&ca, &[], &[]);
    let synapse = Synapse::start(&ca);
    let agent = fed::agent(&ca);
    let (_, alice, _) = hearth.server.register("alice", "pw-alice-1");
    let (_, sam) = synapse.register("sam", "pw-sam-1");
    let hearth_base = hearth.server.url("");
    let synapse_base = synapse.url("");
    let pdf: Vec<u8> = (0..300_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let picture = png(300, 200);

    // Hearth → Synapse: a Hearth user reads Synapse's media.
    let theirs = upload(&agent, &synapse_base, &sam, "application/pdf", &pdf, "résumé.pdf");
    let got = send(
        &agent,
        "GET",
        &format!("{hearth_base}{MEDIA}/download/{}/{theirs}", synapse.server_name()),
        &alice,
        None,
    );
    assert_eq!(got.status, 200, "{}\n{}", got.json(), hearth.server.log_text());
    assert!(got.body == pdf, "the same bytes");
    assert_eq!(got.header("content-type"), Some("application/pdf"));
    assert_eq!(got.header("content-disposition"), Some("attachment; filename*=utf-8''r%C3%A9sum%C3%A9.pdf"));
    let image = upload(&agent, &synapse_base, &sam, "image/png", &picture, "cat.png");
    let url = format!(
        "{hearth_base}{MEDIA}/thumbnail/{}/{image}?width=32&height=32&method=crop",
        synapse.server_name()
    );
    let got = send(&agent, "GET", &url, &alice, None);
    assert_eq!(got.status, 200, "{}\n{}", got.json(), hearth.server.log_text());
    assert_eq!(dims(&got.body), (32, 32));

    // Synapse → Hearth: a Synapse user reads Hearth's media.
    let ours = upload(&agent, &hearth_base, &alice, "application/pdf", &pdf, "résumé.pdf");
    let url = format!("{synapse_base}{MEDIA}/download/{}/{ours}", hearth.name);
    let got = send(&agent, "GET", &url, &sam, None);
    assert_eq!(got.status, 200, "{}\n{}", got.json(), synapse.log_tail(60));
    assert!(got.body == pdf, "the same bytes");
    assert_eq!(got.header("content-type"), Some("application/pdf"));
    let disposition = got.header("content-disposition").unwrap_or("");
    assert!(disposition.contains("r%C3%A9sum%C3%A9.pdf"), "{disposition}");
    let image = upload(&agent, &hearth_base, &alice, "image/png", &picture, "cat.png");
    let url =
        format!("{synapse_base}{MEDIA}/thumbnail/{}/{image}?width=32&height=32&method=crop", hearth.name);
    let got = send(&agent, "GET", &url, &sam, None);
    assert_eq!(got.status, 200, "{}\n{}", got.json(), synapse.log_tail(60));
    assert_eq!(dims(&got.body), (32, 32));
    // Synapse asked Hearth's federation endpoint, not the deprecated one.
    let log = hearth.server.log_text();
    assert!(log.contains(&format!("GET /_matrix/federation/v1/media/download/{ours} 200")), "{log}");
}
