// Drives Hearth through matrix-js-sdk, the library Element Web is built on.
// Run by tests/js_sdk.rs: `node client.mjs SCENARIO BASE_URL`; prints one
// JSON line with what it saw and exits 0, or prints the failure and exits 1.
//
//   invite-history   alice writes in a room and invites bob; bob's client
//                    accepts and must see the earlier messages in its live
//                    timeline (no "You can't see earlier messages").
//   cross-signing    alice's client (Rust crypto, as Element) bootstraps
//                    cross-signing through UIA and reports it ready.
//   relations        alice edits a message, bob reacts (twice: the second
//                    is refused) and replies in a thread; a fresh client of
//                    alice's with thread support reads it all back from the
//                    bundled aggregations, /relations and /threads.

import { ClientEvent, createClient, KnownMembership } from "matrix-js-sdk";
import { logger } from "matrix-js-sdk/lib/logger.js";

logger.setLevel("warn");

const [scenario, baseUrl] = process.argv.slice(2);
/** Longest any step may take. */
const STEP_MS = 20000;

async function register(name, password) {
  const url = `${baseUrl}/_matrix/client/v3/register`;
  const body = { username: name, password };
  let r = await fetch(url, { method: "POST", body: JSON.stringify(body) });
  let j = await r.json();
  if (r.status === 401) {
    body.auth = { type: "m.login.dummy", session: j.session };
    r = await fetch(url, { method: "POST", body: JSON.stringify(body) });
    j = await r.json();
  }
  if (r.status !== 200) throw new Error(`register ${name}: ${r.status} ${JSON.stringify(j)}`);
  return j;
}

function client(session) {
  return createClient({
    baseUrl,
    accessToken: session.access_token,
    userId: session.user_id,
    deviceId: session.device_id,
  });
}

/** Resolves when `check()` is true, re-checked on every sync; rejects after STEP_MS. */
function until(c, what, check) {
  return new Promise((resolve, reject) => {
    if (check()) return resolve();
    const timer = setTimeout(() => {
      c.removeListener(ClientEvent.Sync, onSync);
      reject(new Error(`timed out waiting for ${what}`));
    }, STEP_MS);
    const onSync = () => {
      if (check()) {
        clearTimeout(timer);
        c.removeListener(ClientEvent.Sync, onSync);
        resolve();
      }
    };
    c.on(ClientEvent.Sync, onSync);
  });
}

async function started(c, opts = {}) {
  await c.startClient({ initialSyncLimit: 20, ...opts });
  await until(c, "the first sync", () => c.isInitialSyncComplete());
  return c;
}

async function inviteHistory() {
  const run = Math.random().toString(36).slice(2, 8);
  const alice = client(await register(`alice${run}`, "alice-password"));
  const bobSession = await register(`bob${run}`, "bob-password");
  const { room_id: roomId } = await alice.createRoom({ preset: "private_chat", name: "history" });
  const sent = [];
  for (let i = 0; i < 5; i++) {
    const body = `before the invite ${i}`;
    await alice.sendTextMessage(roomId, body);
    sent.push(body);
  }
  await alice.invite(roomId, bobSession.user_id);
  const bob = await started(client(bobSession));
  await until(bob, "the invite", () => bob.getRoom(roomId)?.getMyMembership() === KnownMembership.Invite);
  await bob.joinRoom(roomId);
  const bodies = () =>
    (bob.getRoom(roomId)?.getLiveTimeline().getEvents() ?? [])
      .filter((e) => e.getType() === "m.room.message")
      .map((e) => e.getContent().body);
  await until(bob, "the earlier messages in bob's timeline", () => sent.every((b) => bodies().includes(b)));
  const seen = bodies();
  bob.stopClient();
  alice.stopClient();
  return { roomId, seen };
}

async function crossSigning() {
  const run = Math.random().toString(36).slice(2, 8);
  const password = "alice-password";
  const session = await register(`xsign${run}`, password);
  const alice = client(session);
  await alice.initRustCrypto({ useIndexedDB: false });
  await started(alice);
  const crypto = alice.getCrypto();
  await crypto.bootstrapCrossSigning({
    authUploadDeviceSigningKeys: async (makeRequest) => {
      await makeRequest({
        type: "m.login.password",
        identifier: { type: "m.id.user", user: session.user_id },
        password,
      });
    },
  });
  const ready = await crypto.isCrossSigningReady();
  const status = await crypto.getCrossSigningStatus();
  alice.stopClient();
  if (!ready) throw new Error(`cross-signing not ready: ${JSON.stringify(status)}`);
  // What another client sees: the master and self-signing keys, and this
  // device signed by the self-signing key.
  const r = await fetch(`${baseUrl}/_matrix/client/v3/keys/query`, {
    method: "POST",
    headers: { Authorization: `Bearer ${session.access_token}` },
    body: JSON.stringify({ device_keys: { [session.user_id]: [] } }),
  });
  const keys = await r.json();
  const ssk = Object.keys(keys.self_signing_keys?.[session.user_id]?.keys ?? {})[0];
  const device = keys.device_keys?.[session.user_id]?.[session.device_id];
  const deviceSigned = Boolean(ssk && device?.signatures?.[session.user_id]?.[ssk]);
  const hasMaster = Boolean(keys.master_keys?.[session.user_id]);
  if (!hasMaster || !deviceSigned) throw new Error(`keys/query after bootstrap: ${JSON.stringify(keys)}`);
  return { ready, status, hasMaster, deviceSigned };
}

async function relations() {
  const run = Math.random().toString(36).slice(2, 8);
  const aliceSession = await register(`alice${run}`, "alice-password");
  const alice = client(aliceSession);
  const bob = client(await register(`bob${run}`, "bob-password"));
  const { room_id: roomId } = await alice.createRoom({ preset: "public_chat", name: "relations" });
  await bob.joinRoom(roomId);
  const { event_id: original } = await alice.sendTextMessage(roomId, "helo");
  const { event_id: editId } = await alice.sendMessage(roomId, {
    msgtype: "m.text",
    body: "* hello",
    "m.new_content": { msgtype: "m.text", body: "hello" },
    "m.relates_to": { rel_type: "m.replace", event_id: original },
  });
  const reaction = { "m.relates_to": { rel_type: "m.annotation", event_id: original, key: "👍" } };
  const { event_id: reactionId } = await bob.sendEvent(roomId, "m.reaction", reaction);
  let duplicate = null;
  try {
    await bob.sendEvent(roomId, "m.reaction", reaction);
  } catch (e) {
    duplicate = e.errcode ?? String(e);
  }
  const { event_id: replyId } = await bob.sendTextMessage(roomId, original, "in the thread");

  // What the server bundles with the original, as the SDK fetches it.
  const raw = await alice.fetchRoomEvent(roomId, original);
  const bundled = raw.unsigned?.["m.relations"] ?? {};
  // Relations through the SDK's /relations call.
  const annotations = await alice.relations(roomId, original, "m.annotation", "m.reaction");
  const threadReplies = await alice.relations(roomId, original, "m.thread", null);

  // A fresh client with thread support: the edit applied from the bundle,
  // the thread built from the bundle and /threads.
  const fresh = await started(client(aliceSession), { threadSupport: true });
  const room = fresh.getRoom(roomId);
  await until(fresh, "the original in the timeline", () => room.findEventById(original) !== undefined);
  const ev = room.findEventById(original);
  await room.fetchRoomThreads();
  const thread = room.getThread(original);
  await until(fresh, "the thread's reply", () => thread?.replyToEvent?.getId() === replyId);
  const result = {
    editId,
    reactionId,
    replyId,
    duplicate,
    bundledReplace: bundled["m.replace"]?.event_id ?? null,
    bundledThreadCount: bundled["m.thread"]?.count ?? null,
    bundledThreadLatest: bundled["m.thread"]?.latest_event?.event_id ?? null,
    participated: bundled["m.thread"]?.current_user_participated ?? null,
    annotations: annotations.events.map((e) => e.getId()),
    threadReplies: threadReplies.events.map((e) => e.getId()),
    replacingEventId: ev.replacingEventId() ?? null,
    shownBody: ev.getContent().body,
    threads: room.getThreads().map((t) => t.id),
    threadLength: thread?.length ?? null,
    threadLatest: thread?.replyToEvent?.getId() ?? null,
  };
  fresh.stopClient();
  return result;
}

const scenarios = { "invite-history": inviteHistory, "cross-signing": crossSigning, relations };

try {
  const run = scenarios[scenario];
  if (!run) throw new Error(`unknown scenario ${scenario}`);
  const result = await run();
  console.log(JSON.stringify({ ok: true, scenario, ...result }));
  process.exit(0);
} catch (e) {
  console.log(JSON.stringify({ ok: false, scenario, error: String(e?.stack ?? e) }));
  process.exit(1);
}
