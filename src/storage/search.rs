//! The full-text index: `event_search` (FTS5, contentless), rowid = the
//! event's position. Written in the transaction that stores the event
//! ([`index`]); a redaction deletes the entry ([`unindex`]). Read by
//! `POST /search` through [`match_expression`] (the only way user text
//! reaches `MATCH`), [`candidates`], [`events_at`] and [`count`].
//!
//! The index knows positions only: which room an entry belongs to, its
//! type and who may see it are answered from `events` and by the caller.

use std::collections::HashMap;

use rusqlite::{params, Connection, OptionalExtension};
use serde_json::{json, Value};

use super::events::{self, StoredEvent};
use crate::error::Result;

/// Most distinct words of one search: each is a term of the `MATCH`
/// expression, ANDed together.
pub const TERMS_MAX: usize = 32;

/// The text an event is found by: `content.body` of a message,
/// `content.name` of a room name, `content.topic` of a topic (else the
/// plain-text representation in `content["m.topic"]`).
pub fn text_of<'a>(kind: &str, content: &'a Value) -> Option<&'a str> {
    let field = match kind {
        "m.room.message" => "body",
        "m.room.name" => "name",
        "m.room.topic" => "topic",
        _ => return None,
    };
    if let Some(text) = content.get(field).and_then(Value::as_str) {
        return Some(text);
    }
    if kind != "m.room.topic" {
        return None;
    }
    // The spec's topic block: a list of representations, text/plain when
    // the mimetype is absent.
    content.get("m.topic")?.get("m.text")?.as_array()?.iter().find_map(|r| {
        let plain = r.get("mimetype").is_none_or(|m| m.as_str() == Some("text/plain"));
        plain.then(|| r.get("body")?.as_str()).flatten()
    })
}

/// Indexes an event just stored, when it has searchable text.
pub fn index(conn: &Connection, row: &StoredEvent, pdu: &Value) -> Result<()> {
    let Some(text) = pdu.get("content").and_then(|c| text_of(&row.kind, c)) else {
        return Ok(());
    };
    conn.prepare_cached("INSERT INTO event_search (rowid, text) VALUES (?1, ?2)")?
        .execute(params![row.pos, text])?;
    Ok(())
}

/// Removes a redacted event from the index.
pub fn unindex(conn: &Connection, pos: i64) -> Result<()> {
    conn.prepare_cached("DELETE FROM event_search WHERE rowid = ?1")?.execute([pos])?;
    Ok(())
}

/// A search's words as an FTS5 expression, and the words themselves (for
/// highlighting), or `None` when the text holds no word. A word is a run
/// of letters and digits, as the index's `unicode61` tokenizer sees them;
/// everything else separates words, so no FTS5 syntax (quotes, `*`, `-`,
/// `NEAR(`, column filters) survives. Bare words like `AND`, `OR`, `NOT`
/// are searched for as words: each is a quoted string. At most
/// [`TERMS_MAX`] distinct words are kept, case folded.
pub fn match_expression(text: &str) -> Option<(String, Vec<String>)> {
    let mut words: Vec<String> = Vec::new();
    for word in text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
        let word = word.to_lowercase();
        if !words.contains(&word) && words.len() < TERMS_MAX {
            words.push(word);
        }
    }
    if words.is_empty() {
        return None;
    }
    // Words have no `"`: quoting needs no escapes.
    let expr = words.iter().map(|w| format!("\"{w}\"")).collect::<Vec<_>>().join(" ");
    Some((expr, words))
}

/// The order of results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Best match first (`bm25`), newest first among equals.
    Rank,
    /// Newest first.
    Recent,
}

/// A place in an order: results strictly past it come next. `score` is
/// `bm25` (lower is better); [`Order::Recent`] looks at `pos` alone.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cursor {
    pub score: f64,
    pub pos: i64,
}

impl Cursor {
    /// Before every result, in either order.
    pub const START: Cursor = Cursor { score: f64::NEG_INFINITY, pos: i64::MAX };
}

/// One entry of the index that matched.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    pub pos: i64,
    /// `bm25`: lower is better.
    pub score: f64,
}

/// Up to `limit` index entries matching `expr` (from [`match_expression`])
/// at positions up to `upto`, strictly past `after` in `order`, in that
/// order. Entries of every room: see [`events_at`] for which to keep.
/// Newest-first reads the index in rowid order and stops at `limit`; best-
/// first scores every match (FTS5 keeps the best `limit` as it goes).
pub fn candidates(
    conn: &Connection,
    expr: &str,
    upto: i64,
    order: Order,
    after: Cursor,
    limit: usize,
) -> Result<Vec<Candidate>> {
    let sql = match order {
        Order::Rank => {
            "SELECT rowid, rank FROM event_search
             WHERE event_search MATCH ?1 AND rowid <= ?2 AND (rank > ?3 OR (rank = ?3 AND rowid < ?4))
             ORDER BY rank, rowid DESC LIMIT ?5"
        }
        Order::Recent => {
            "SELECT rowid, rank FROM event_search
             WHERE event_search MATCH ?1 AND rowid <= ?2 AND rowid < ?4
             ORDER BY rowid DESC LIMIT ?5"
        }
    };
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(params![expr, upto, after.score, after.pos, limit], |r| {
        Ok(Candidate { pos: r.get(0)?, score: r.get(1)? })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The score the entry at `pos` has now for `expr`, if it still matches.
/// Scores move as the index grows (`bm25` weighs words by how rare they
/// are everywhere): a page of results goes on from the score its last
/// match has now, not the one it had.
pub fn score_of(conn: &Connection, expr: &str, pos: i64) -> Result<Option<f64>> {
    Ok(conn
        .prepare_cached("SELECT rank FROM event_search WHERE event_search MATCH ?1 AND rowid = ?2")?
        .query_row(params![expr, pos], |r| r.get(0))
        .optional()?)
}

/// The events at these positions that belong to one of `rooms` and have
/// one of `types`, by position.
pub fn events_at(
    conn: &Connection,
    positions: &[i64],
    rooms: &[&str],
    types: &[&str],
) -> Result<HashMap<i64, StoredEvent>> {
    let sql = format!(
        "SELECT {} FROM events WHERE pos IN (SELECT value FROM json_each(?1))
             AND room_id IN (SELECT value FROM json_each(?2))
             AND type IN (SELECT value FROM json_each(?3))",
        events::COLUMNS
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(
        params![json!(positions).to_string(), json!(rooms).to_string(), json!(types).to_string()],
        events::from_row,
    )?;
    let mut out = HashMap::new();
    for e in rows {
        let e = e?;
        out.insert(e.pos, e);
    }
    Ok(out)
}

/// How many entries match `expr` at positions up to `upto` among events of
/// `types` in `rooms`, each room counted up to its own bound (`None`: no
/// bound); at most `cap`. Knows nothing of history visibility: an upper
/// bound of what a search can return.
pub fn count(
    conn: &Connection,
    expr: &str,
    upto: i64,
    rooms: &[(&str, Option<i64>)],
    types: &[&str],
    cap: usize,
) -> Result<usize> {
    let rooms: Vec<Value> = rooms.iter().map(|(r, bound)| json!([r, bound.unwrap_or(i64::MAX)])).collect();
    let n: i64 = conn
        .prepare_cached(
            "WITH scope(room_id, upto) AS MATERIALIZED
                 (SELECT value ->> 0, value ->> 1 FROM json_each(?3))
             SELECT count(*) FROM (
                 SELECT 1 FROM event_search
                 JOIN events e ON e.pos = event_search.rowid
                 JOIN scope ON scope.room_id = e.room_id
                 WHERE event_search MATCH ?1 AND event_search.rowid <= ?2 AND e.pos <= scope.upto
                   AND e.type IN (SELECT value FROM json_each(?4))
                 LIMIT ?5)",
        )?
        .query_row(
            params![
                expr,
                upto,
                Value::Array(rooms).to_string(),
                json!(types).to_string(),
                i64::try_from(cap).unwrap_or(i64::MAX)
            ],
            |r| r.get(0),
        )?;
    Ok(usize::try_from(n).unwrap_or(0))
}

/// The rooms a user may search, with the last position they may see in
/// each when they are not joined (their membership event: a leave, ban,
/// invite or knock); `None` while joined. Forgotten rooms are left out.
pub fn searchable_rooms(conn: &Connection, user_id: &str) -> Result<Vec<(String, Option<i64>)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT room_id, CASE WHEN membership = 'join' THEN NULL ELSE pos END
         FROM memberships WHERE user_id = ?1 AND forgotten = 0 ORDER BY room_id",
    )?;
    let rows = stmt.query_map([user_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::test_conn;

    fn put(conn: &Connection, pos: i64, text: &str) {
        conn.execute("INSERT INTO event_search (rowid, text) VALUES (?1, ?2)", params![pos, text]).unwrap();
    }

    fn positions(got: &[Candidate]) -> Vec<i64> {
        got.iter().map(|c| c.pos).collect()
    }

    #[test]
    fn words_are_quoted_and_syntax_is_dropped() {
        assert_eq!(
            match_expression("Hello, world!"),
            Some(("\"hello\" \"world\"".into(), vec!["hello".into(), "world".into()]))
        );
        assert_eq!(
            match_expression("a AND b a"),
            Some(("\"a\" \"and\" \"b\"".into(), vec!["a".into(), "and".into(), "b".into()]))
        );
        for nothing in ["", "   ", "\"", "*", "-", "()", "\"*\"-^:"] {
            assert_eq!(match_expression(nothing), None, "{nothing:?}");
        }
        let many = (0..100).map(|i| format!("w{i}")).collect::<Vec<_>>().join(" ");
        assert_eq!(match_expression(&many).unwrap().1.len(), TERMS_MAX);
    }

    #[test]
    fn hostile_text_never_breaks_match() {
        let conn = test_conn();
        put(&conn, 1, "near the naïve café, NOT here");
        for text in [
            "\"",
            "\"\"\"",
            "*",
            "a*",
            "NEAR(a b)",
            "NEAR(",
            "-x",
            "text:near",
            "^near",
            "a OR b",
            "AND",
            "NOT",
            "(",
            ")",
            "{text}: x",
            "naive",
            "CAFÉ",
            "日本語",
            "\u{301}",
            "e\u{301}",
            "\0",
        ] {
            if let Some((expr, _)) = match_expression(text) {
                candidates(&conn, &expr, i64::MAX, Order::Rank, Cursor::START, 10)
                    .unwrap_or_else(|e| panic!("{text:?} → {expr}: {e}"));
            }
        }
        let (expr, _) = match_expression("NAIVE cafe").unwrap();
        assert_eq!(
            positions(&candidates(&conn, &expr, i64::MAX, Order::Recent, Cursor::START, 10).unwrap()),
            [1]
        );
        let (expr, _) = match_expression("not").unwrap();
        assert_eq!(
            positions(&candidates(&conn, &expr, i64::MAX, Order::Recent, Cursor::START, 10).unwrap()),
            [1]
        );
    }

    #[test]
    fn both_orders_page_past_a_cursor() {
        let conn = test_conn();
        put(&conn, 1, "apple");
        put(&conn, 2, "apple apple apple");
        put(&conn, 3, "apple pie and more words here");
        put(&conn, 4, "pear");
        put(&conn, 5, "apple apple");
        let (expr, _) = match_expression("apple").unwrap();
        let recent = candidates(&conn, &expr, i64::MAX, Order::Recent, Cursor::START, 10).unwrap();
        assert_eq!(positions(&recent), [5, 3, 2, 1]);
        let upto = candidates(&conn, &expr, 3, Order::Recent, Cursor::START, 10).unwrap();
        assert_eq!(positions(&upto), [3, 2, 1]);
        let ranked = candidates(&conn, &expr, i64::MAX, Order::Rank, Cursor::START, 10).unwrap();
        assert_eq!(ranked.len(), 4);
        assert!(ranked.windows(2).all(|w| w[0].score <= w[1].score));
        assert_eq!(ranked[0].pos, 2, "the densest match is best");
        // Page by page, one at a time: the same order, nothing twice.
        for order in [Order::Rank, Order::Recent] {
            let all = candidates(&conn, &expr, i64::MAX, order, Cursor::START, 10).unwrap();
            let mut paged = Vec::new();
            let mut at = Cursor::START;
            while let Some(c) = candidates(&conn, &expr, i64::MAX, order, at, 1).unwrap().pop() {
                paged.push(c);
                at = Cursor { score: c.score, pos: c.pos };
            }
            assert_eq!(paged, all, "{order:?}");
        }
    }

    #[test]
    fn topics_fall_back_to_the_plain_text_block() {
        let block = json!({ "m.topic": { "m.text": [
            { "mimetype": "text/html", "body": "<b>x</b>" }, { "body": "plain words" },
        ]}});
        assert_eq!(text_of("m.room.topic", &block), Some("plain words"));
        assert_eq!(text_of("m.room.topic", &json!({ "topic": "t", "m.topic": {} })), Some("t"));
        assert_eq!(text_of("m.room.name", &block), None);
        assert_eq!(text_of("m.room.member", &json!({ "body": "x" })), None);
    }
}
