//! API keys. With a master key, every API route needs `Authorization: Bearer <key>` (or
//! `X-Api-Key`). The master key manages keys; other keys carry actions, collections and an
//! optional expiry. Keys are stored as SHA-256 hashes in `<data>/keys.json` (written atomically).

use crate::error::{ApiError, ApiResult};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sousuo_common::now_secs;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum Action {
    /// Search a collection.
    #[serde(rename = "search")]
    Search,
    /// Ask a question over a collection.
    #[serde(rename = "ask")]
    Ask,
    /// Add or replace documents (an existing id is replaced: in effect a delete of its old
    /// content, which the README says).
    #[serde(rename = "documents.add")]
    DocumentsAdd,
    /// Delete documents.
    #[serde(rename = "documents.delete")]
    DocumentsDelete,
    /// Create, delete and list collections.
    #[serde(rename = "collections.manage")]
    CollectionsManage,
    /// Everything, keys included.
    #[serde(rename = "*")]
    All,
}

/// A stored key (the secret itself is never stored).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct KeyRecord {
    pub uid: String,
    #[serde(default)]
    pub name: String,
    pub actions: Vec<Action>,
    /// Collection names, or `*` for all.
    pub collections: Vec<String>,
    /// Unix seconds after which the key is refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    pub created_at: u64,
    /// The key's first characters, to tell keys apart.
    pub prefix: String,
}

#[derive(Serialize, Deserialize, Default)]
struct KeyFile {
    keys: Vec<StoredKey>,
}

#[derive(Serialize, Deserialize, Clone)]
struct StoredKey {
    #[serde(flatten)]
    record: KeyRecord,
    hash: String,
}

/// Who is calling.
#[derive(Debug, Clone)]
pub enum Caller {
    /// No master key is configured: everything is allowed.
    Open,
    /// The master key: everything.
    Master,
    /// An API key with its rights.
    Key(KeyRecord),
}

impl Caller {
    /// Whether the caller may do `action` on `collection` (`None`: not about one collection).
    pub fn allows(&self, action: Action, collection: Option<&str>) -> bool {
        match self {
            Caller::Open | Caller::Master => true,
            Caller::Key(k) => {
                let act = k.actions.iter().any(|a| *a == action || *a == Action::All);
                let col = match collection {
                    None => true,
                    Some(c) => k.collections.iter().any(|x| x == "*" || x == c),
                };
                act && col
            }
        }
    }

    /// 403 unless allowed. The message names the action, never other collections.
    pub fn require(&self, action: Action, collection: Option<&str>) -> ApiResult<()> {
        if self.allows(action, collection) {
            return Ok(());
        }
        let act = serde_json::to_value(action).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
        Err(ApiError::forbidden(match collection {
            Some(c) => format!("this API key may not {act} on collection {c:?}"),
            None => format!("this API key may not {act}"),
        }))
    }

    /// Whether the caller may see the collection at all (for listings).
    pub fn sees(&self, collection: &str) -> bool {
        match self {
            Caller::Open | Caller::Master => true,
            Caller::Key(k) => k.collections.iter().any(|x| x == "*" || x == collection),
        }
    }

    /// Whether this is the master key.
    pub fn is_master(&self) -> bool {
        matches!(self, Caller::Open | Caller::Master)
    }
}

/// The key store.
pub struct KeyStore {
    path: PathBuf,
    master_hash: Option<String>,
    keys: RwLock<Vec<StoredKey>>,
}

fn hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Compares two hex digests in time independent of where they differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A new key request.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct NewKey {
    #[serde(default)]
    pub name: String,
    pub actions: Vec<Action>,
    pub collections: Vec<String>,
    /// Unix seconds.
    #[serde(default)]
    pub expires_at: Option<u64>,
}

/// A created key: the only time the secret is shown.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedKey {
    pub key: String,
    #[serde(flatten)]
    pub record: KeyRecord,
}

impl KeyStore {
    /// Opens the key file at `path` (created on first key); `master` enables authentication.
    pub fn open(path: &Path, master: Option<String>) -> ApiResult<Self> {
        if let Some(m) = &master {
            if m.len() < 16 {
                return Err(ApiError::bad_request("weak_master_key", "the master key must be at least 16 characters"));
            }
        }
        let keys = match std::fs::read(path) {
            Ok(b) => {
                serde_json::from_slice::<KeyFile>(&b)
                    .map_err(|e| ApiError::internal(format!("{} is damaged: {e}", path.display())))?
                    .keys
            }
            Err(_) => Vec::new(),
        };
        Ok(KeyStore { path: path.to_path_buf(), master_hash: master.as_deref().map(hash), keys: RwLock::new(keys) })
    }

    /// Whether authentication is on (a master key is set).
    pub fn enabled(&self) -> bool {
        self.master_hash.is_some()
    }

    /// Identifies the caller from the presented key (`None`: no key sent).
    pub fn identify(&self, presented: Option<&str>) -> ApiResult<Caller> {
        let Some(master) = &self.master_hash else { return Ok(Caller::Open) };
        let Some(key) = presented else {
            return Err(ApiError::unauthorized("an API key is required: send it as `Authorization: Bearer <key>`"));
        };
        let h = hash(key);
        if same(&h, master) {
            return Ok(Caller::Master);
        }
        let keys = self.keys.read().map_err(|_| ApiError::internal("poisoned"))?;
        match keys.iter().find(|k| same(&k.hash, &h)) {
            Some(k) if k.record.expires_at.is_some_and(|e| e <= now_secs()) => {
                Err(ApiError::unauthorized("this API key has expired"))
            }
            Some(k) => Ok(Caller::Key(k.record.clone())),
            None => Err(ApiError::unauthorized("the API key is not valid")),
        }
    }

    /// The stored keys.
    pub fn list(&self) -> Vec<KeyRecord> {
        self.keys.read().map(|k| k.iter().map(|s| s.record.clone()).collect()).unwrap_or_default()
    }

    /// Creates a key; its secret is returned once and never stored.
    pub fn create(&self, req: NewKey) -> ApiResult<CreatedKey> {
        if req.actions.is_empty() || req.collections.is_empty() {
            return Err(ApiError::bad_request(
                "bad_key",
                "a key needs at least one action and one collection (or \"*\")",
            ));
        }
        if req.expires_at.is_some_and(|e| e <= now_secs()) {
            return Err(ApiError::bad_request("bad_key", "expires_at is in the past"));
        }
        let mut bytes = [0u8; 24];
        rand::rng().fill_bytes(&mut bytes);
        let key = format!("ssk_{}", hex::encode(bytes));
        let mut uid = [0u8; 8];
        rand::rng().fill_bytes(&mut uid);
        let record = KeyRecord {
            uid: hex::encode(uid),
            name: req.name,
            actions: req.actions,
            collections: req.collections,
            expires_at: req.expires_at,
            created_at: now_secs(),
            prefix: key[..8].to_string(),
        };
        let mut keys = self.keys.write().map_err(|_| ApiError::internal("poisoned"))?;
        keys.push(StoredKey { record: record.clone(), hash: hash(&key) });
        self.save(&keys)?;
        Ok(CreatedKey { key, record })
    }

    /// Deletes a key.
    pub fn delete(&self, uid: &str) -> ApiResult<()> {
        let mut keys = self.keys.write().map_err(|_| ApiError::internal("poisoned"))?;
        let before = keys.len();
        keys.retain(|k| k.record.uid != uid);
        if keys.len() == before {
            return Err(ApiError::not_found("key_not_found", format!("no key {uid:?}")));
        }
        self.save(&keys)
    }

    fn save(&self, keys: &[StoredKey]) -> ApiResult<()> {
        let body = serde_json::to_vec_pretty(&KeyFile { keys: keys.to_vec() })
            .map_err(|e| ApiError::internal(e.to_string()))?;
        Ok(sousuo_common::fs::atomic_write(&self.path, &body)?)
    }
}
