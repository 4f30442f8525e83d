//! Reporting content: `/rooms/{roomId}/report/{eventId}`,
//! `/rooms/{roomId}/report`, `/users/{userId}/report`, and the admin's
//! `hearth reports list|resolve`.

mod common;

use common::{assert_error, create_room, enc, join, room_path, say, set_state, Server, User, V3};
use serde_json::{json, Value};

const PW: &str = "report-password-1";

fn report_event(s: &Server, who: &User, room: &str, event: &str, body: Value) -> (u16, Value) {
    s.post(&room_path(room, &format!("report/{}", enc(event))), Some(&who.token), body)
}

#[test]
fn an_event_is_reported_by_a_member_who_can_see_it() {
    let s = Server::start();
    let alice = s.user("alice", PW);
    let bob = s.user("bob", PW);
    let carol = s.user("carol", PW);
    let room = create_room(&s, &alice.token, json!({ "preset": "public_chat" }));
    // Before bob joins, with history for members only from their join on.
    set_state(
        &s,
        &alice.token,
        &room,
        "m.room.history_visibility",
        "",
        json!({ "history_visibility": "joined" }),
    );
    let hidden = say(&s, &alice.token, &room, "before bob");
    join(&s, &bob.token, &room);
    let seen = say(&s, &alice.token, &room, "after bob");

    let ok = report_event(&s, &bob, &room, &seen, json!({ "reason": "rude", "score": -80 }));
    assert_eq!(ok, (200, json!({})));
    // Reason and score are optional for an event.
    assert_eq!(report_event(&s, &bob, &room, &seen, json!({})), (200, json!({})));

    // Not visible to bob, not joined, unknown, or in another room: all 404.
    assert_error(&report_event(&s, &bob, &room, &hidden, json!({ "reason": "x" })), 404, "M_NOT_FOUND");
    assert_error(&report_event(&s, &carol, &room, &seen, json!({ "reason": "x" })), 404, "M_NOT_FOUND");
    assert_error(&report_event(&s, &bob, &room, "$nope", json!({ "reason": "x" })), 404, "M_NOT_FOUND");
    let other = create_room(&s, &bob.token, json!({}));
    assert_error(&report_event(&s, &bob, &other, &seen, json!({ "reason": "x" })), 404, "M_NOT_FOUND");
    // After leaving, bob can no longer report.
    common::leave(&s, &bob.token, &room);
    assert_error(&report_event(&s, &bob, &room, &seen, json!({ "reason": "x" })), 404, "M_NOT_FOUND");
}

#[test]
fn bodies_are_checked() {
    let s = Server::start();
    let alice = s.user("alice", PW);
    let room = create_room(&s, &alice.token, json!({}));
    let event = say(&s, &alice.token, &room, "hello");
    let bad = |body: Value, errcode: &str| {
        let got = report_event(&s, &alice, &room, &event, body.clone());
        assert_error(&got, 400, errcode);
    };
    bad(json!({ "reason": 5 }), "M_BAD_JSON");
    bad(json!({ "reason": ["x"] }), "M_BAD_JSON");
    bad(json!({ "score": "-5" }), "M_BAD_JSON");
    bad(json!({ "score": 1 }), "M_INVALID_PARAM");
    bad(json!({ "score": -101 }), "M_INVALID_PARAM");
    bad(json!({ "score": -1.5 }), "M_INVALID_PARAM");
    bad(json!({ "reason": "x".repeat(2049) }), "M_INVALID_PARAM");
    bad(json!([]), "M_BAD_JSON");
    assert_eq!(report_event(&s, &alice, &room, &event, json!({ "reason": "x".repeat(2048) })).0, 200);
    let (status, _) = s.post(&room_path(&room, &format!("report/{}", enc(&event))), None, json!({}));
    assert_eq!(status, 401);

    // The room and user reports require a reason.
    assert_error(&s.post(&room_path(&room, "report"), Some(&alice.token), json!({})), 400, "M_MISSING_PARAM");
    let user_report = format!("{V3}/users/{}/report", enc(&alice.id));
    assert_error(&s.post(&user_report, Some(&alice.token), json!({ "reason": 1 })), 400, "M_BAD_JSON");
    let long = json!({ "reason": "y".repeat(5000) });
    assert_error(&s.post(&user_report, Some(&alice.token), long), 400, "M_INVALID_PARAM");
}

#[test]
fn rooms_and_users_are_reported_when_known() {
    let s = Server::start();
    let alice = s.user("alice", PW);
    let mallory = s.user("mallory", PW);
    // A private room alice is not in: she may still report it.
    let room = create_room(&s, &mallory.token, json!({ "preset": "private_chat" }));
    let room_report =
        |room: &str| s.post(&room_path(room, "report"), Some(&alice.token), json!({ "reason": "" }));
    assert_eq!(room_report(&room), (200, json!({})));
    assert_error(&room_report("!unknown:localhost"), 404, "M_NOT_FOUND");
    assert_error(&room_report("not-a-room"), 400, "M_INVALID_PARAM");

    let user_report = |user: &str| {
        s.post(&format!("{V3}/users/{}/report", enc(user)), Some(&alice.token), json!({ "reason": "spam" }))
    };
    assert_eq!(user_report(&mallory.id), (200, json!({})));
    assert_error(&user_report("@nobody:localhost"), 404, "M_NOT_FOUND");
    assert_error(&user_report("@someone:elsewhere.example"), 404, "M_NOT_FOUND");
    assert_error(&user_report("nobody"), 400, "M_INVALID_PARAM");
}

#[test]
fn reports_are_listed_and_resolved_from_the_command_line() {
    let s = Server::start();
    let alice = s.user("alice", PW);
    let bob = s.user("bob", PW);
    let room = create_room(&s, &alice.token, json!({}));
    let event = say(&s, &alice.token, &room, "spam spam");
    assert_eq!(
        report_event(&s, &alice, &room, &event, json!({ "reason": "spam\nline", "score": -100 })).0,
        200
    );
    let user_report = format!("{V3}/users/{}/report", enc(&bob.id));
    assert_eq!(s.post(&user_report, Some(&alice.token), json!({ "reason": "impersonation" })).0, 200);

    let (code, out, err) = s.hearth(&["reports", "list"], "");
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines[0].starts_with("1 "), "{out}");
    for needle in [alice.id.as_str(), &event, &room, "\"spam\\nline\"", "score -100", "open"] {
        assert!(lines[0].contains(needle), "{needle} missing: {out}");
    }
    assert!(
        lines[1].contains(&format!("user {}", bob.id)) && lines[1].contains("\"impersonation\""),
        "{out}"
    );

    let (code, out, err) = s.hearth(&["reports", "resolve", "1"], "");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("resolved report 1"), "{out}");
    let (_, out, _) = s.hearth(&["reports", "list"], "");
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.starts_with("2 "), "{out}");
    let (_, out, _) = s.hearth(&["reports", "list", "--all"], "");
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(out.lines().next().is_some_and(|l| l.contains("resolved 20")), "{out}");

    let (code, _, err) = s.hearth(&["reports", "resolve", "99"], "");
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no report 99"), "{err}");
    let (code, _, err) = s.hearth(&["reports", "resolve", "x"], "");
    assert_eq!(code, 2, "{err}");
}
