//! The application services this server knows: the registration files
//! named by `appservice_config_files`, read at start and again on SIGHUP,
//! held as one immutable [`Set`] that is swapped whole. A request takes the
//! current set (an `Arc`) and keeps it for its lifetime, so a reload never
//! changes the rules under a request in flight.
//!
//! A file that cannot be read or checked stops the start with its path and
//! the key at fault; on SIGHUP it keeps the old set (logged). Across files
//! `id`s and `as_token`s must be unique (the spec's MUST), and no token may
//! be another's `hs_token`.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::core::appservice::{self, Registration};
use crate::core::ids;
use crate::crypto::token;

/// Most registration files.
pub const FILES_MAX: usize = 64;

/// One loaded set of registrations.
#[derive(Default)]
pub struct Set {
    list: Vec<Arc<Registration>>,
    /// SHA-256 of each `as_token` → index in `list`: tokens are compared
    /// by hash, as user tokens are.
    by_token: HashMap<[u8; 32], usize>,
}

impl Set {
    /// Reads and checks the files, in order.
    pub fn load(paths: &[String]) -> Result<Set, String> {
        if paths.len() > FILES_MAX {
            return Err(format!("appservice_config_files: more than {FILES_MAX} files"));
        }
        let mut set = Set::default();
        for path in paths {
            let text = read_bounded(path).map_err(|e| format!("application service file {path}: {e}"))?;
            let reg =
                appservice::parse(&text).map_err(|e| format!("application service file {path}: {e}"))?;
            set.add(reg).map_err(|e| format!("application service file {path}: {e}"))?;
        }
        Ok(set)
    }

    /// Adds one checked registration (tests build sets this way).
    pub fn add(&mut self, reg: Registration) -> Result<(), String> {
        if self.list.iter().any(|r| r.id == reg.id) {
            return Err(format!("id: {:?} is already used by another registration", reg.id));
        }
        let hash = token::token_hash(&reg.as_token);
        if self.by_token.contains_key(&hash) {
            return Err("as_token: already used by another registration".into());
        }
        for other in &self.list {
            if other.hs_token == reg.as_token || other.as_token == reg.hs_token {
                return Err("as_token: one registration's as_token is another's hs_token".into());
            }
        }
        self.by_token.insert(hash, self.list.len());
        self.list.push(Arc::new(reg));
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub fn all(&self) -> &[Arc<Registration>] {
        &self.list
    }

    /// The registration whose `as_token` this is.
    pub fn by_token(&self, access_token: &str) -> Option<&Arc<Registration>> {
        self.by_token_hash(&token::token_hash(access_token))
    }

    /// The registration whose `as_token` hashes to this.
    pub fn by_token_hash(&self, hash: &[u8; 32]) -> Option<&Arc<Registration>> {
        self.by_token.get(hash).map(|&i| &self.list[i])
    }

    pub fn by_id(&self, id: &str) -> Option<&Arc<Registration>> {
        self.list.iter().find(|r| r.id == id)
    }

    /// The application service holding `user_id` in an exclusive
    /// namespace (or as its sender), if one does.
    pub fn exclusive_user_owner(&self, user_id: &str, server_name: &str) -> Option<&Arc<Registration>> {
        self.list.iter().find(|r| {
            r.is_exclusive_user(user_id) || user_id == ids::user_id(&r.sender_localpart, server_name)
        })
    }

    /// The application service holding `alias` in an exclusive namespace.
    pub fn exclusive_alias_owner(&self, alias: &str) -> Option<&Arc<Registration>> {
        self.list.iter().find(|r| r.is_alias(alias, true))
    }
}

/// The current set, swapped whole on reload.
pub struct Registry {
    current: RwLock<Arc<Set>>,
}

impl Registry {
    pub fn new(set: Set) -> Registry {
        Registry { current: RwLock::new(Arc::new(set)) }
    }

    /// The set in force now.
    pub fn current(&self) -> Arc<Set> {
        self.current.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces the set.
    pub fn replace(&self, set: Set) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(set);
    }
}

/// Registers each application service's sender user (`sender_localpart`)
/// that does not exist yet; writes only when one is missing, so a server
/// on a full disk still starts.
pub fn ensure_senders(db: &crate::storage::Db, set: &Set, server_name: &str) -> crate::error::Result<()> {
    let senders = set.all().iter().map(|r| ids::user_id(&r.sender_localpart, server_name));
    let missing: Vec<String> = db.read(|tx| {
        let mut out = Vec::new();
        for s in senders {
            if !crate::storage::users::exists(tx, &s)? {
                out.push(s);
            }
        }
        Ok(out)
    })?;
    if missing.is_empty() {
        return Ok(());
    }
    let now = crate::storage::now_ms();
    db.write(|tx| {
        for s in &missing {
            crate::storage::users::create(tx, s, None, false, now)?;
        }
        Ok(())
    })
}

/// The file's text, refused past `FILE_MAX_BYTES` before it is all read.
fn read_bounded(path: &str) -> Result<String, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut text = String::new();
    file.take(appservice::FILE_MAX_BYTES as u64 + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("not readable as UTF-8 text: {e}"))?;
    if text.len() > appservice::FILE_MAX_BYTES {
        return Err(format!("larger than {} bytes", appservice::FILE_MAX_BYTES));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(id: &str, as_token: &str, hs_token: &str) -> Registration {
        appservice::parse(&format!(
            "id: {id}\nurl: null\nas_token: {as_token}\nhs_token: {hs_token}\nsender_localpart: {id}_bot\n\
             namespaces:\n  users:\n    - exclusive: true\n      regex: '@{id}_.*'\n  aliases:\n    - exclusive: true\n      regex: '#{id}_.*'\n"
        ))
        .unwrap()
    }

    #[test]
    fn ids_and_tokens_are_unique_across_files() {
        let mut set = Set::default();
        set.add(reg("a", "ta", "ha")).unwrap();
        assert!(set.add(reg("a", "tb", "hb")).unwrap_err().starts_with("id:"));
        assert!(set.add(reg("b", "ta", "hb")).unwrap_err().starts_with("as_token:"));
        assert!(set.add(reg("b", "ha", "hb")).unwrap_err().contains("hs_token"));
        set.add(reg("b", "tb", "hb")).unwrap();
        assert_eq!(set.by_token("tb").unwrap().id, "b");
        assert!(set.by_token("hb").is_none());
        assert_eq!(set.exclusive_user_owner("@a_x:hs", "hs").unwrap().id, "a");
        assert_eq!(set.exclusive_user_owner("@b_bot:hs", "hs").unwrap().id, "b");
        assert!(set.exclusive_user_owner("@c:hs", "hs").is_none());
        assert_eq!(set.exclusive_alias_owner("#b_x:hs").unwrap().id, "b");
    }

    #[test]
    fn a_bad_file_is_named_with_its_key() {
        let dir = std::env::temp_dir().join(format!("hearth-as-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.yaml");
        std::fs::write(&path, "id: x\nurl: null\nas_token: a\nhs_token: b\nsender_localpart: x\nnamespaces:\n  users:\n    - exclusive: maybe\n      regex: '@x_.*'\n").unwrap();
        let p = path.to_string_lossy().into_owned();
        let err = Set::load(std::slice::from_ref(&p)).err().unwrap();
        assert!(err.contains(&p) && err.contains("namespaces.users[0].exclusive"), "{err}");
        let missing = Set::load(&[dir.join("none.yaml").to_string_lossy().into_owned()]).err().unwrap();
        assert!(missing.contains("none.yaml"), "{missing}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
