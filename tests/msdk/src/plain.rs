//! The other user: plain client-server HTTP (reqwest), no SDK, so what the
//! SDK user observes is caused by nothing but the server.

use std::time::Duration;

use serde_json::{json, Value};

use crate::Failure;

/// Bound on one plain request.
const TIMEOUT: Duration = Duration::from_secs(20);

/// A registered user talking plain HTTP.
pub struct Plain {
    http: reqwest::Client,
    base: String,
    pub user_id: String,
    token: String,
}

/// Percent-encodes a path segment (everything but unreserved characters).
pub fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(TIMEOUT).build().expect("a reqwest client")
}

/// One request; the status and the body as JSON (`Null` if none or not JSON).
async fn send(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Result<(u16, Value), Failure> {
    let mut rq = http.request(method.clone(), url);
    if let Some(t) = token {
        rq = rq.bearer_auth(t);
    }
    if let Some(b) = body {
        rq = rq.json(b);
    }
    let what = format!("{method} {url}");
    let resp = rq.send().await.map_err(|e| Failure::new(&what, format!("transport: {e}")))?;
    let status = resp.status().as_u16();
    let text = resp.text().await.map_err(|e| Failure::new(&what, format!("reading the body: {e}")))?;
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

/// Registers `name` through the open-registration UIA dance (m.login.dummy).
pub async fn register(base: &str, name: &str, password: &str) -> Result<(String, Value), Failure> {
    let http = client();
    let url = format!("{base}/_matrix/client/v3/register");
    let mut body = json!({ "username": name, "password": password, "inhibit_login": false });
    let (mut status, mut reply) = send(&http, reqwest::Method::POST, &url, None, Some(&body)).await?;
    if status == 401 {
        let session = reply["session"].as_str().unwrap_or_default().to_owned();
        body["auth"] = json!({ "type": "m.login.dummy", "session": session });
        (status, reply) = send(&http, reqwest::Method::POST, &url, None, Some(&body)).await?;
    }
    if status != 200 {
        return Err(Failure::new("register", format!("{name}: {status} {reply}")));
    }
    let user_id = reply["user_id"].as_str().unwrap_or_default().to_owned();
    Ok((user_id, reply))
}

impl Plain {
    /// Registers `name` and keeps its access token.
    pub async fn register(base: &str, name: &str, password: &str) -> Result<Plain, Failure> {
        let (user_id, reply) = register(base, name, password).await?;
        let token = reply["access_token"].as_str().unwrap_or_default().to_owned();
        Ok(Plain { http: client(), base: base.to_owned(), user_id, token })
    }

    /// A request under `/_matrix/client/v3`; fails unless it answers 200.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, Failure> {
        let url = format!("{}/_matrix/client/v3{path}", self.base);
        let (status, reply) =
            send(&self.http, method.clone(), &url, Some(&self.token), body.as_ref()).await?;
        if status != 200 {
            return Err(Failure::new(&format!("{method} {path}"), format!("{status} {reply}")));
        }
        Ok(reply)
    }

    pub async fn create_room(&self, body: Value) -> Result<String, Failure> {
        let reply = self.call(reqwest::Method::POST, "/createRoom", Some(body)).await?;
        reply["room_id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| Failure::new("createRoom", format!("{reply}")))
    }

    pub async fn invite(&self, room: &str, user: &str) -> Result<(), Failure> {
        let path = format!("/rooms/{}/invite", enc(room));
        self.call(reqwest::Method::POST, &path, Some(json!({ "user_id": user }))).await.map(drop)
    }

    /// Sends an `m.text` message; its event ID.
    pub async fn send_text(&self, room: &str, txn: &str, text: &str) -> Result<String, Failure> {
        let path = format!("/rooms/{}/send/m.room.message/{}", enc(room), enc(txn));
        let reply = self
            .call(reqwest::Method::PUT, &path, Some(json!({ "msgtype": "m.text", "body": text })))
            .await?;
        reply["event_id"].as_str().map(str::to_owned).ok_or_else(|| Failure::new("send", format!("{reply}")))
    }

    /// The newest `limit` events of the room, newest first.
    pub async fn messages(&self, room: &str, limit: u32) -> Result<Vec<Value>, Failure> {
        let path = format!("/rooms/{}/messages?dir=b&limit={limit}", enc(room));
        let reply = self.call(reqwest::Method::GET, &path, None).await?;
        Ok(reply["chunk"].as_array().cloned().unwrap_or_default())
    }

    pub async fn read_receipt(&self, room: &str, event: &str) -> Result<(), Failure> {
        let path = format!("/rooms/{}/receipt/m.read/{}", enc(room), enc(event));
        self.call(reqwest::Method::POST, &path, Some(json!({}))).await.map(drop)
    }

    pub async fn typing(&self, room: &str, typing: bool) -> Result<(), Failure> {
        let path = format!("/rooms/{}/typing/{}", enc(room), enc(&self.user_id));
        self.call(reqwest::Method::PUT, &path, Some(json!({ "typing": typing, "timeout": 30000 })))
            .await
            .map(drop)
    }
}
