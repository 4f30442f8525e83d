//! Media: `media`, `media_content`, `media_chunks`, `media_thumbnails`.
//!
//! Bytes are stored once per distinct content (SHA-256) in chunks of
//! [`CHUNK_BYTES`]; a media ID points at its content. An upload is written
//! while it arrives into a *staged* content row (no hash yet), a few chunks
//! per short write, so the single writer is never held while a slow client
//! sends; [`stage_finish`] then names it by its hash (or drops it when that
//! content is already stored) in the request's final transaction.
//! [`ContentReader`] reads a content back chunk by chunk, each chunk in its
//! own short read, so neither direction holds a whole file in memory.

use std::io::{self, Read, Seek, SeekFrom};

use rusqlite::{params, Connection, OptionalExtension, Row};

use super::Db;
use crate::error::Result;

/// Size of one stored chunk (the last of a content may be shorter). Large
/// enough that a 100 MB video is 400 rows, small enough that a download
/// holds little memory per connection.
pub const CHUNK_BYTES: usize = 256 * 1024;

/// A staged upload that has not grown for this long is abandoned: its
/// client went away or the server stopped mid-upload.
pub const STAGED_STALE_MS: i64 = 60 * 60 * 1000;

/// A media ID and what is known of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Media {
    pub origin: String,
    pub media_id: String,
    pub user_id: Option<String>,
    /// `None` while an ID made by `/create` waits for its bytes.
    pub content_id: Option<i64>,
    pub content_type: Option<String>,
    pub filename: Option<String>,
    pub size: i64,
    pub created_ts: i64,
    pub expires_ts: Option<i64>,
    pub uploaded_ts: Option<i64>,
}

fn media_from_row(r: &Row) -> rusqlite::Result<Media> {
    Ok(Media {
        origin: r.get(0)?,
        media_id: r.get(1)?,
        user_id: r.get(2)?,
        content_id: r.get(3)?,
        content_type: r.get(4)?,
        filename: r.get(5)?,
        size: r.get(6)?,
        created_ts: r.get(7)?,
        expires_ts: r.get(8)?,
        uploaded_ts: r.get(9)?,
    })
}

pub fn get(conn: &Connection, origin: &str, media_id: &str) -> Result<Option<Media>> {
    Ok(conn
        .query_row(
            "SELECT origin, media_id, user_id, content_id, content_type, filename, size, created_ts,
                    expires_ts, uploaded_ts
             FROM media WHERE origin = ?1 AND media_id = ?2",
            params![origin, media_id],
            media_from_row,
        )
        .optional()?)
}

/// Reserves a media ID for a later upload (`/create`); false if taken.
pub fn create_pending(
    conn: &Connection,
    origin: &str,
    media_id: &str,
    user_id: &str,
    now: i64,
    expires_ts: i64,
) -> Result<bool> {
    let n = conn.execute(
        "INSERT INTO media (origin, media_id, user_id, created_ts, expires_ts)
         VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
        params![origin, media_id, user_id, now, expires_ts],
    )?;
    Ok(n == 1)
}

/// IDs of `user_id` made by `/create`, not uploaded to and not expired.
pub fn pending_count(conn: &Connection, user_id: &str, now: i64) -> Result<i64> {
    Ok(conn.query_row(
        "SELECT count(*) FROM media WHERE user_id = ?1 AND content_id IS NULL AND expires_ts > ?2",
        params![user_id, now],
        |r| r.get(0),
    )?)
}

/// What an upload stores about its media ID.
pub struct Upload<'a> {
    pub origin: &'a str,
    pub media_id: &'a str,
    pub user_id: &'a str,
    pub content_id: i64,
    pub content_type: &'a str,
    pub filename: Option<&'a str>,
    pub size: i64,
}

/// Records a new media ID with its content; false if the ID is taken.
pub fn insert_uploaded(conn: &Connection, u: &Upload<'_>, now: i64) -> Result<bool> {
    let n = conn.execute(
        "INSERT INTO media (origin, media_id, user_id, content_id, content_type, filename, size,
                            created_ts, uploaded_ts)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8) ON CONFLICT DO NOTHING",
        params![u.origin, u.media_id, u.user_id, u.content_id, u.content_type, u.filename, u.size, now],
    )?;
    Ok(n == 1)
}

/// Gives a reserved media ID its content; false if it has some already.
pub fn attach_content(conn: &Connection, u: &Upload<'_>, now: i64) -> Result<bool> {
    let n = conn.execute(
        "UPDATE media SET content_id = ?3, content_type = ?4, filename = ?5, size = ?6,
                          uploaded_ts = ?7, expires_ts = NULL
         WHERE origin = ?1 AND media_id = ?2 AND content_id IS NULL",
        params![u.origin, u.media_id, u.content_id, u.content_type, u.filename, u.size, now],
    )?;
    Ok(n == 1)
}

/// Bytes of media uploaded by `user_id` (each media ID counts, even when
/// its content is shared).
pub fn user_usage(conn: &Connection, user_id: &str) -> Result<i64> {
    Ok(conn
        .query_row("SELECT coalesce(sum(size), 0) FROM media WHERE user_id = ?1", [user_id], |r| r.get(0))?)
}

/// Size of a stored (not staged) content.
pub fn content_size(conn: &Connection, content_id: i64) -> Result<Option<i64>> {
    Ok(conn
        .query_row("SELECT size FROM media_content WHERE id = ?1 AND sha256 IS NOT NULL", [content_id], |r| {
            r.get(0)
        })
        .optional()?)
}

/// Chunk `idx` of a content.
pub fn chunk(conn: &Connection, content_id: i64, idx: i64) -> Result<Option<Vec<u8>>> {
    Ok(conn
        .query_row(
            "SELECT data FROM media_chunks WHERE content_id = ?1 AND idx = ?2",
            params![content_id, idx],
            |r| r.get(0),
        )
        .optional()?)
}

/// Starts a staged content for an upload that is about to arrive.
pub fn stage_begin(conn: &Connection, now: i64) -> Result<i64> {
    conn.execute("INSERT INTO media_content (sha256, size, touched_ts) VALUES (NULL, 0, ?1)", [now])?;
    Ok(conn.last_insert_rowid())
}

/// Appends `chunks` (numbered from `first_idx`) to a staged content.
pub fn stage_append(conn: &Connection, id: i64, first_idx: i64, chunks: &[&[u8]], now: i64) -> Result<()> {
    let mut insert =
        conn.prepare_cached("INSERT INTO media_chunks (content_id, idx, data) VALUES (?1, ?2, ?3)")?;
    let mut added = 0i64;
    for (i, data) in chunks.iter().enumerate() {
        insert.execute(params![id, first_idx + i as i64, data])?;
        added += data.len() as i64;
    }
    conn.execute(
        "UPDATE media_content SET size = size + ?2, touched_ts = ?3 WHERE id = ?1 AND sha256 IS NULL",
        params![id, added, now],
    )?;
    Ok(())
}

/// Names a complete staged content by its hash and returns the content to
/// use: the staged one, or, when the same bytes are stored already, that
/// one (the staged copy is dropped).
pub fn stage_finish(conn: &Connection, id: i64, sha256: &[u8; 32], now: i64) -> Result<i64> {
    let existing: Option<i64> = conn
        .query_row("SELECT id FROM media_content WHERE sha256 = ?1", [&sha256[..]], |r| r.get(0))
        .optional()?;
    if let Some(existing) = existing {
        stage_discard(conn, id)?;
        return Ok(existing);
    }
    conn.execute(
        "UPDATE media_content SET sha256 = ?2, touched_ts = ?3 WHERE id = ?1 AND sha256 IS NULL",
        params![id, &sha256[..], now],
    )?;
    Ok(id)
}

/// Drops a staged content and its chunks.
pub fn stage_discard(conn: &Connection, id: i64) -> Result<()> {
    conn.execute("DELETE FROM media_content WHERE id = ?1 AND sha256 IS NULL", [id])?;
    Ok(())
}

/// Drops staged uploads that stopped growing before `before_ts` (their
/// client went away, or the server stopped mid-upload).
pub fn discard_stale_staging(conn: &Connection, before_ts: i64) -> Result<usize> {
    Ok(conn.execute("DELETE FROM media_content WHERE sha256 IS NULL AND touched_ts < ?1", [before_ts])?)
}

/// Stores small bytes already in memory (a thumbnail) as content, once.
pub fn store_bytes(conn: &Connection, bytes: &[u8], sha256: &[u8; 32], now: i64) -> Result<i64> {
    let existing: Option<i64> = conn
        .query_row("SELECT id FROM media_content WHERE sha256 = ?1", [&sha256[..]], |r| r.get(0))
        .optional()?;
    if let Some(id) = existing {
        return Ok(id);
    }
    let id = stage_begin(conn, now)?;
    let chunks: Vec<&[u8]> = bytes.chunks(CHUNK_BYTES).collect();
    stage_append(conn, id, 0, &chunks, now)?;
    stage_finish(conn, id, sha256, now)
}

/// A stored thumbnail: its content, type and size.
#[derive(Debug, Clone, PartialEq)]
pub struct Thumbnail {
    pub thumb_id: i64,
    pub content_type: String,
    pub size: i64,
}

pub fn thumbnail(
    conn: &Connection,
    content_id: i64,
    width: u32,
    height: u32,
    method: &str,
) -> Result<Option<Thumbnail>> {
    Ok(conn
        .query_row(
            "SELECT t.thumb_id, t.content_type, c.size FROM media_thumbnails t
             JOIN media_content c ON c.id = t.thumb_id
             WHERE t.content_id = ?1 AND t.width = ?2 AND t.height = ?3 AND t.method = ?4",
            params![content_id, width, height, method],
            |r| Ok(Thumbnail { thumb_id: r.get(0)?, content_type: r.get(1)?, size: r.get(2)? }),
        )
        .optional()?)
}

/// Records a generated thumbnail (a concurrent request may have been first).
pub fn insert_thumbnail(
    conn: &Connection,
    content_id: i64,
    width: u32,
    height: u32,
    method: &str,
    thumb_id: i64,
    content_type: &str,
) -> Result<()> {
    conn.execute(
        "INSERT INTO media_thumbnails (content_id, width, height, method, thumb_id, content_type)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING",
        params![content_id, width, height, method, thumb_id, content_type],
    )?;
    Ok(())
}

/// What the remote media cache stores about another server's media.
pub struct RemoteCopy<'a> {
    pub origin: &'a str,
    pub media_id: &'a str,
    pub content_id: i64,
    pub content_type: &'a str,
    pub filename: Option<&'a str>,
    pub size: i64,
}

/// Records a cached copy of another server's media (`uploaded_ts` is when
/// it was cached, which `purge` goes by); false if the ID is cached
/// already (that copy stays).
pub fn insert_remote(conn: &Connection, r: &RemoteCopy<'_>, now: i64) -> Result<bool> {
    let n = conn.execute(
        "INSERT INTO media (origin, media_id, user_id, content_id, content_type, filename, size,
                            created_ts, uploaded_ts)
         VALUES (?1, ?2, NULL, ?3, ?4, ?5, ?6, ?7, ?7) ON CONFLICT DO NOTHING",
        params![r.origin, r.media_id, r.content_id, r.content_type, r.filename, r.size, now],
    )?;
    Ok(n == 1)
}

/// When a stored content was last used (written, or served from the
/// remote media cache).
pub fn touched_ts(conn: &Connection, content_id: i64) -> Result<Option<i64>> {
    Ok(conn
        .query_row(
            "SELECT touched_ts FROM media_content WHERE id = ?1 AND sha256 IS NOT NULL",
            [content_id],
            |r| r.get(0),
        )
        .optional()?)
}

/// Marks a stored content as used now (the remote cache's recency).
pub fn touch(conn: &Connection, content_id: i64, now: i64) -> Result<()> {
    conn.execute(
        "UPDATE media_content SET touched_ts = ?2 WHERE id = ?1 AND sha256 IS NOT NULL",
        params![content_id, now],
    )?;
    Ok(())
}

/// The contents that only cached remote media use (no local media ID
/// shares them), least recently used first, each with its bytes and those
/// of its thumbnails: what evicting it frees.
fn remote_only_contents(conn: &Connection, local_origin: &str) -> Result<Vec<(i64, i64)>> {
    let mut st = conn.prepare_cached(
        "SELECT c.id, c.size + coalesce((SELECT sum(tc.size) FROM media_thumbnails t
                                          JOIN media_content tc ON tc.id = t.thumb_id
                                          WHERE t.content_id = c.id), 0)
         FROM media_content c
         WHERE c.sha256 IS NOT NULL
           AND EXISTS (SELECT 1 FROM media m WHERE m.content_id = c.id AND m.origin != ?1)
           AND NOT EXISTS (SELECT 1 FROM media m WHERE m.content_id = c.id AND m.origin = ?1)
         ORDER BY c.touched_ts, c.id",
    )?;
    let rows = st.query_map([local_origin], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Bytes the remote media cache holds: contents only cached remote media
/// use, with their thumbnails.
pub fn remote_cache_bytes(conn: &Connection, local_origin: &str) -> Result<i64> {
    Ok(remote_only_contents(conn, local_origin)?.iter().map(|(_, bytes)| bytes).sum())
}

/// Drops cached remote media, least recently used content first, until
/// the remote media cache holds at most `cap_bytes`; the content `keep`
/// (the one just stored) stays. Then collects what nothing uses any more.
pub fn evict_remote(conn: &Connection, local_origin: &str, cap_bytes: i64, keep: i64) -> Result<Purged> {
    let contents = remote_only_contents(conn, local_origin)?;
    let mut held: i64 = contents.iter().map(|(_, bytes)| bytes).sum();
    let mut media = 0;
    for (id, bytes) in contents {
        if held <= cap_bytes {
            break;
        }
        if id == keep {
            continue;
        }
        media += conn
            .execute("DELETE FROM media WHERE content_id = ?1 AND origin != ?2", params![id, local_origin])?;
        held -= bytes;
    }
    if media == 0 {
        return Ok(Purged::default());
    }
    let (contents, bytes_freed) = collect_garbage(conn)?;
    Ok(Purged { media, contents, bytes_freed })
}

/// What `hearth media stats` shows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    pub local_media: i64,
    pub remote_media: i64,
    /// Sum of the sizes of all media IDs (shared content counted each time).
    pub media_bytes: i64,
    /// IDs made by `/create` still waiting for their bytes.
    pub pending: i64,
    /// Distinct stored contents, thumbnails included, and their bytes.
    pub contents: i64,
    pub stored_bytes: i64,
    pub thumbnails: i64,
    pub thumbnail_bytes: i64,
    /// Uploads in progress (or abandoned) and their bytes so far.
    pub staged: i64,
    pub staged_bytes: i64,
}

pub fn stats(conn: &Connection, local_origin: &str) -> Result<Stats> {
    let mut s = Stats::default();
    (s.local_media, s.remote_media, s.media_bytes, s.pending) = conn.query_row(
        "SELECT coalesce(sum(origin = ?1 AND content_id IS NOT NULL), 0),
                coalesce(sum(origin != ?1 AND content_id IS NOT NULL), 0),
                coalesce(sum(size), 0),
                coalesce(sum(content_id IS NULL), 0)
         FROM media",
        [local_origin],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
    )?;
    (s.contents, s.stored_bytes, s.staged, s.staged_bytes) = conn.query_row(
        "SELECT coalesce(sum(sha256 IS NOT NULL), 0),
                coalesce(sum(CASE WHEN sha256 IS NOT NULL THEN size ELSE 0 END), 0),
                coalesce(sum(sha256 IS NULL), 0),
                coalesce(sum(CASE WHEN sha256 IS NULL THEN size ELSE 0 END), 0)
         FROM media_content",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
    )?;
    (s.thumbnails, s.thumbnail_bytes) = conn.query_row(
        "SELECT count(*), coalesce(sum(c.size), 0) FROM media_thumbnails t
         JOIN media_content c ON c.id = t.thumb_id",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    Ok(s)
}

/// What a purge removed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Purged {
    pub media: usize,
    pub contents: usize,
    pub bytes_freed: i64,
}

/// Removes media uploaded (or cached) before `before_ts` — only remote
/// media (origin other than `local_origin`) when `remote_only` — and IDs
/// made by `/create` that lapsed, then every content nothing refers to.
pub fn purge(
    conn: &Connection,
    before_ts: i64,
    local_origin: &str,
    remote_only: bool,
    now: i64,
) -> Result<Purged> {
    let media = conn.execute(
        "DELETE FROM media
         WHERE (content_id IS NOT NULL AND coalesce(uploaded_ts, created_ts) < ?1 AND (?3 = 0 OR origin != ?2))
            OR (content_id IS NULL AND expires_ts <= ?4)",
        params![before_ts, local_origin, remote_only, now],
    )?;
    let (contents, bytes_freed) = collect_garbage(conn)?;
    Ok(Purged { media, contents, bytes_freed })
}

/// Deletes the contents no media ID and no thumbnail refers to (deleting an
/// original removes its thumbnails, whose contents go in the next round).
/// Staged uploads are left alone.
pub fn collect_garbage(conn: &Connection) -> Result<(usize, i64)> {
    /// Originals, then their thumbnails' contents: two rounds suffice; a
    /// third finds nothing.
    const ROUNDS_MAX: usize = 3;
    let orphan = "sha256 IS NOT NULL
         AND NOT EXISTS (SELECT 1 FROM media m WHERE m.content_id = media_content.id)
         AND NOT EXISTS (SELECT 1 FROM media_thumbnails t WHERE t.thumb_id = media_content.id)";
    let (mut count, mut bytes) = (0, 0);
    for _ in 0..ROUNDS_MAX {
        let freed: i64 = conn.query_row(
            &format!("SELECT coalesce(sum(size), 0) FROM media_content WHERE {orphan}"),
            [],
            |r| r.get(0),
        )?;
        let n = conn.execute(&format!("DELETE FROM media_content WHERE {orphan}"), [])?;
        if n == 0 {
            break;
        }
        count += n;
        bytes += freed;
    }
    Ok((count, bytes))
}

/// Reads a stored content from `db` as a byte stream, one chunk per read
/// transaction; seekable, so image decoders can use it. Holds one chunk.
pub struct ContentReader<'a> {
    db: &'a Db,
    content_id: i64,
    size: u64,
    pos: u64,
    /// The chunk in memory and its index.
    chunk: Vec<u8>,
    chunk_idx: Option<u64>,
}

impl<'a> ContentReader<'a> {
    pub fn new(db: &'a Db, content_id: i64, size: u64) -> ContentReader<'a> {
        ContentReader { db, content_id, size, pos: 0, chunk: Vec::new(), chunk_idx: None }
    }

    pub fn len(&self) -> u64 {
        self.size
    }

    pub fn is_empty(&self) -> bool {
        self.size == 0
    }
}

impl Read for ContentReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.size || buf.is_empty() {
            return Ok(0);
        }
        let idx = self.pos / CHUNK_BYTES as u64;
        if self.chunk_idx != Some(idx) {
            let (db, id) = (self.db, self.content_id);
            let data = db
                .read(|tx| chunk(tx, id, idx as i64))
                .map_err(|e| io::Error::other(e.message.to_string()))?
                .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "media chunk missing"))?;
            self.chunk = data;
            self.chunk_idx = Some(idx);
        }
        let offset = (self.pos - idx * CHUNK_BYTES as u64) as usize;
        let available = self.chunk.get(offset..).unwrap_or(&[]);
        if available.is_empty() {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "media chunk short"));
        }
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for ContentReader<'_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self.size.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        let target =
            target.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?;
        self.pos = target;
        Ok(target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::test_conn;

    fn upload<'a>(media_id: &'a str, content_id: i64, size: i64) -> Upload<'a> {
        Upload {
            origin: "here",
            media_id,
            user_id: "@a:here",
            content_id,
            content_type: "text/plain",
            filename: None,
            size,
        }
    }

    #[test]
    fn staged_content_is_deduplicated_and_collected() {
        let c = test_conn();
        let a = stage_begin(&c, 1).unwrap();
        stage_append(&c, a, 0, &[b"hello ", b"world"], 2).unwrap();
        let id = stage_finish(&c, a, &[1; 32], 3).unwrap();
        assert_eq!(id, a);
        assert_eq!(content_size(&c, id).unwrap(), Some(11));
        assert!(insert_uploaded(&c, &upload("m1", id, 11), 3).unwrap());
        assert!(!insert_uploaded(&c, &upload("m1", id, 11), 3).unwrap());

        // The same bytes again: the staged copy goes, the stored one is used.
        let b = stage_begin(&c, 4).unwrap();
        stage_append(&c, b, 0, &[b"hello world"], 4).unwrap();
        assert_eq!(stage_finish(&c, b, &[1; 32], 5).unwrap(), a);
        let rows: i64 = c.query_row("SELECT count(*) FROM media_content", [], |r| r.get(0)).unwrap();
        assert_eq!(rows, 1);
        assert!(insert_uploaded(&c, &upload("m2", a, 11), 5).unwrap());
        assert_eq!(user_usage(&c, "@a:here").unwrap(), 22);

        // A thumbnail, then a purge of everything: nothing is left.
        let t = store_bytes(&c, b"thumb", &[2; 32], 6).unwrap();
        insert_thumbnail(&c, a, 32, 32, "crop", t, "image/png").unwrap();
        assert_eq!(thumbnail(&c, a, 32, 32, "crop").unwrap().unwrap().size, 5);
        let s = stats(&c, "here").unwrap();
        assert_eq!((s.local_media, s.contents, s.stored_bytes, s.thumbnails), (2, 2, 16, 1));
        // Not old enough yet.
        assert_eq!(purge(&c, 1, "here", false, 10).unwrap().media, 0);
        // Remote only: these are local.
        assert_eq!(purge(&c, 100, "here", true, 10).unwrap().media, 0);
        let p = purge(&c, 100, "here", false, 10).unwrap();
        assert_eq!(p, Purged { media: 2, contents: 2, bytes_freed: 16 });
        let chunks: i64 = c.query_row("SELECT count(*) FROM media_chunks", [], |r| r.get(0)).unwrap();
        assert_eq!(chunks, 0);
    }

    fn remote(c: &Connection, origin: &str, media_id: &str, bytes: &[u8], seed: u8, now: i64) -> i64 {
        let id = store_bytes(c, bytes, &[seed; 32], now).unwrap();
        let copy = RemoteCopy {
            origin,
            media_id,
            content_id: id,
            content_type: "image/png",
            filename: Some("x.png"),
            size: bytes.len() as i64,
        };
        assert!(insert_remote(c, &copy, now).unwrap());
        id
    }

    #[test]
    fn the_remote_cache_evicts_the_least_recently_used() {
        let c = test_conn();
        let a = remote(&c, "there", "a", &[1; 100], 1, 10);
        let b = remote(&c, "there", "b", &[2; 100], 2, 20);
        // Cached twice (another server's ID for the same bytes): one content.
        assert!(insert_remote(
            &c,
            &RemoteCopy {
                origin: "else",
                media_id: "b2",
                content_id: b,
                content_type: "x/y",
                filename: None,
                size: 100
            },
            21
        )
        .unwrap());
        assert!(!insert_remote(
            &c,
            &RemoteCopy {
                origin: "there",
                media_id: "a",
                content_id: b,
                content_type: "x/y",
                filename: None,
                size: 1
            },
            22
        )
        .unwrap());
        // A local upload's content is not the cache's.
        let local = store_bytes(&c, &[3; 100], &[3; 32], 5).unwrap();
        assert!(insert_uploaded(&c, &upload("mine", local, 100), 5).unwrap());
        // A thumbnail of a cached copy counts with it.
        let t = store_bytes(&c, &[4; 10], &[4; 32], 11).unwrap();
        insert_thumbnail(&c, a, 32, 32, "crop", t, "image/png").unwrap();
        assert_eq!(remote_cache_bytes(&c, "here").unwrap(), 210);
        assert_eq!(touched_ts(&c, a).unwrap(), Some(10));

        // `a` is used again: `b` is now the least recently used.
        touch(&c, a, 30).unwrap();
        let d = remote(&c, "there", "d", &[5; 100], 5, 40);
        assert_eq!(remote_cache_bytes(&c, "here").unwrap(), 310);
        let p = evict_remote(&c, "here", 250, d).unwrap();
        assert_eq!(p, Purged { media: 2, contents: 1, bytes_freed: 100 });
        assert!(get(&c, "there", "b").unwrap().is_none());
        assert!(get(&c, "else", "b2").unwrap().is_none());
        assert!(get(&c, "there", "a").unwrap().is_some());
        assert_eq!(remote_cache_bytes(&c, "here").unwrap(), 210);
        // Under the cap: nothing goes. The one just stored stays even past it.
        assert_eq!(evict_remote(&c, "here", 1000, d).unwrap(), Purged::default());
        let p = evict_remote(&c, "here", 0, d).unwrap();
        assert_eq!((p.media, p.contents, p.bytes_freed), (1, 2, 110));
        assert!(get(&c, "there", "d").unwrap().is_some());
        assert!(get(&c, "here", "mine").unwrap().is_some(), "local media is never evicted");
        // Purging remote media only leaves the local upload.
        let p = purge(&c, 100, "here", true, 100).unwrap();
        assert_eq!(p, Purged { media: 1, contents: 1, bytes_freed: 100 });
        assert_eq!(stats(&c, "here").unwrap().local_media, 1);
    }

    #[test]
    fn pending_ids_and_stale_staging() {
        let c = test_conn();
        assert!(create_pending(&c, "here", "p1", "@a:here", 1, 100).unwrap());
        assert!(!create_pending(&c, "here", "p1", "@a:here", 1, 100).unwrap());
        assert_eq!(pending_count(&c, "@a:here", 50).unwrap(), 1);
        assert_eq!(pending_count(&c, "@a:here", 100).unwrap(), 0);
        let s = stage_begin(&c, 1).unwrap();
        stage_append(&c, s, 0, &[b"x"], 1).unwrap();
        let id = stage_finish(&c, s, &[3; 32], 2).unwrap();
        assert!(attach_content(&c, &upload("p1", id, 1), 3).unwrap());
        assert!(!attach_content(&c, &upload("p1", id, 1), 3).unwrap());
        let m = get(&c, "here", "p1").unwrap().unwrap();
        assert_eq!((m.content_id, m.expires_ts, m.uploaded_ts), (Some(id), None, Some(3)));

        let abandoned = stage_begin(&c, 5).unwrap();
        stage_append(&c, abandoned, 0, &[b"partial"], 5).unwrap();
        assert_eq!(stats(&c, "here").unwrap().staged_bytes, 7);
        // Garbage collection leaves uploads in progress alone ...
        assert_eq!(collect_garbage(&c).unwrap(), (0, 0));
        // ... until they are stale.
        assert_eq!(discard_stale_staging(&c, 6).unwrap(), 1);
        let chunks: i64 = c.query_row("SELECT count(*) FROM media_chunks", [], |r| r.get(0)).unwrap();
        assert_eq!(chunks, 1);
    }
}
