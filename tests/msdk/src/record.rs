//! A recording HTTP/1.1 relay between the SDK and the server: the SDK is
//! pointed at it, it forwards each request to the real homeserver, counts
//! the sliding sync exchanges per connection (`conn_id`), and (given a
//! file) appends `{"method","path","status","request","response"}` as one
//! JSON line to it, so a failing run shows exactly what the SDK sent and
//! what it was answered.
//!
//! Just enough HTTP for reqwest talking to a loopback server: requests with
//! a Content-Length body (or none), keep-alive, no chunked request bodies.
//!
//! A client that gives up on a request (the SDK cancels a long-poll when
//! its lists or subscriptions change, or when it stops) closes its
//! connection; the relay then drops its upstream request too, so the server
//! sees the disconnect as it would without the relay. Such an exchange is
//! recorded with `"abandoned": true` and no response.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// Bound on one forwarded exchange (above any long-poll the SDK asks for).
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(90);
/// Bound on reading one request head once its first byte is in.
const HEAD_TIMEOUT: Duration = Duration::from_secs(20);

type Sink = Arc<Mutex<Option<std::fs::File>>>;

/// The path prefix of simplified sliding sync.
pub const SLIDING: &str = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync";

/// Sliding sync exchanges completed so far, by `conn_id`.
#[derive(Clone, Default)]
pub struct Counts(Arc<Mutex<BTreeMap<String, u64>>>);

impl Counts {
    pub fn get(&self) -> BTreeMap<String, u64> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn bump(&self, conn_id: &str) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()).entry(conn_id.to_owned()).or_default() += 1;
    }
}

/// Starts the relay on a loopback port; its base URL and its counts.
pub async fn start(upstream: String, file: Option<std::fs::File>) -> std::io::Result<(String, Counts)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let http = reqwest::Client::builder()
        .timeout(UPSTREAM_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(std::io::Error::other)?;
    let sink: Sink = Arc::new(Mutex::new(file));
    let counts = Counts::default();
    let counted = counts.clone();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let (http, upstream, sink, counts) =
                (http.clone(), upstream.clone(), sink.clone(), counted.clone());
            tokio::spawn(async move {
                if let Err(e) = serve(sock, &http, &upstream, &sink, &counts).await {
                    write_line(&sink, &json!({ "relay_error": e.to_string() }));
                }
            });
        }
    });
    Ok((format!("http://{addr}"), counts))
}

fn write_line(sink: &Sink, v: &Value) {
    if let Some(f) = sink.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
        let _ = writeln!(f, "{v}");
    }
}

/// A body as JSON if it parses, else as text.
fn body_value(bytes: &[u8]) -> Value {
    if bytes.is_empty() {
        return Value::Null;
    }
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
}

async fn serve(
    sock: TcpStream,
    http: &reqwest::Client,
    upstream: &str,
    sink: &Sink,
    counts: &Counts,
) -> std::io::Result<()> {
    let (r, mut w) = sock.into_split();
    let mut r = BufReader::new(r);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let mut parts = line.split_whitespace();
        let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
            return Err(std::io::Error::other(format!("bad request line {line:?}")));
        };
        let (method, target) = (method.to_owned(), target.to_owned());
        let mut headers = Vec::new();
        let mut length = 0usize;
        let mut close = false;
        tokio::time::timeout(HEAD_TIMEOUT, async {
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).await? == 0 {
                    return Err(std::io::Error::other("eof in the request head"));
                }
                let h = h.trim_end();
                if h.is_empty() {
                    return Ok(());
                }
                let Some((k, v)) = h.split_once(':') else { continue };
                let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_owned());
                match k.as_str() {
                    "content-length" => length = v.parse().map_err(std::io::Error::other)?,
                    "transfer-encoding" => {
                        return Err(std::io::Error::other("chunked request bodies unsupported"))
                    }
                    "connection" => close = v.eq_ignore_ascii_case("close"),
                    "host" | "accept-encoding" | "keep-alive" => {}
                    _ => headers.push((k, v)),
                }
            }
        })
        .await
        .map_err(|_| std::io::Error::other("request head timed out"))??;
        let mut body = vec![0u8; length];
        r.read_exact(&mut body).await?;

        let m = reqwest::Method::from_bytes(method.as_bytes()).map_err(std::io::Error::other)?;
        let mut rq = http.request(m, format!("{upstream}{target}"));
        for (k, v) in &headers {
            rq = rq.header(k, v);
        }
        let request = body_value(&body);
        let upstream_call = async {
            let resp = rq.body(body.clone()).send().await?;
            let status = resp.status();
            let headers = resp.headers().clone();
            let bytes = resp.bytes().await?;
            Ok::<_, reqwest::Error>((status, headers, bytes))
        };
        // While the server works, the client may only close (it sends no
        // second request before this answer): EOF means it gave up.
        let answered = tokio::select! {
            a = upstream_call => a,
            _ = r.fill_buf() => {
                write_line(sink, &json!({ "method": method, "path": target, "request": request, "abandoned": true }));
                return Ok(());
            }
        };
        let (status, resp_headers, resp_body) = match answered {
            Ok((status, headers, bytes)) => {
                let hs: Vec<(String, String)> = headers
                    .iter()
                    .map(|(k, v)| (k.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
                    .collect();
                (status, hs, bytes.to_vec())
            }
            Err(e) => {
                let b = json!({ "errcode": "M_UNKNOWN", "error": format!("relay: upstream failed: {e}") });
                (reqwest::StatusCode::BAD_GATEWAY, Vec::new(), b.to_string().into_bytes())
            }
        };
        if target.starts_with(SLIDING) {
            counts.bump(request["conn_id"].as_str().unwrap_or(""));
        }
        write_line(
            sink,
            &json!({
                "method": method,
                "path": target,
                "status": status.as_u16(),
                "request": request,
                "response": body_value(&resp_body),
            }),
        );
        let mut out = format!("HTTP/1.1 {} {}\r\n", status.as_u16(), status.canonical_reason().unwrap_or(""));
        for (k, v) in &resp_headers {
            if !matches!(k.as_str(), "content-length" | "transfer-encoding" | "connection" | "keep-alive") {
                out.push_str(&format!("{k}: {v}\r\n"));
            }
        }
        out.push_str(&format!("content-length: {}\r\n\r\n", resp_body.len()));
        w.write_all(out.as_bytes()).await?;
        w.write_all(&resp_body).await?;
        w.flush().await?;
        if close {
            return Ok(());
        }
    }
}
