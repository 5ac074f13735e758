//! Autolock: a manager's TLS key encrypted at rest with a key derived from the cluster's unlock
//! key (`SWMKEY-1-<base64>`, swarmkit's `HumanReadableKey`), so that a restarted manager starts
//! locked until `swarm unlock` gives the key back.
//!
//! The unlock key itself lives in the Cluster object (replicated, as swarmkit keeps it); every
//! manager reseals its own key material when the key or the setting changes ([`sync`]). The
//! unlocked key is kept in memory per swarm directory ([`remember`]) so [`crate::pki::Identity`]
//! can read and write the sealed file without its callers knowing about autolock.
//!
//! Crypto is ring's: HKDF-SHA256 derives an AES-256-GCM key from the unlock key's 32 random
//! bytes; each sealing has a fresh random nonce.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use base64::Engine as _;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hkdf::{HKDF_SHA256, Salt};
use ring::rand::{SecureRandom, SystemRandom};

use crate::types::Cluster;

/// swarmkit's prefix of a human-readable unlock key.
pub const PREFIX: &str = "SWMKEY-1-";
/// swarmkit's answer to a key it cannot read.
pub const INVALID_KEY_STRING: &str = "invalid key string";
/// dockerd's answer to a well-formed key that does not open this manager.
pub const INVALID_KEY: &str = "swarm could not be unlocked: invalid key provided";
/// dockerd's `errSwarmLocked`.
pub const SWARM_LOCKED: &str = "Swarm is encrypted and needs to be unlocked before it can be used. Please use \"docker swarm unlock\" to unlock it.";
/// dockerd's refusal to leave a locked swarm without `--force`.
pub const LEAVE_LOCKED: &str = "Swarm is encrypted and locked. Please unlock it first or use `--force` to ignore this message.";
/// dockerd's answer to `swarm unlock` on a node that is not locked.
pub const NOT_LOCKED: &str = "swarm is not locked";

/// A new unlock key: 32 random bytes, human-readable.
pub fn new_key() -> String {
    let mut key = [0u8; 32];
    // ring's system RNG fails only if the OS has none; there is no sensible fallback.
    SystemRandom::new()
        .fill(&mut key)
        .expect("system random number generator");
    format!(
        "{PREFIX}{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(key)
    )
}

/// The key's bytes, as swarmkit's `ParseHumanReadableKey` reads it.
pub fn parse_key(key: &str) -> Result<Vec<u8>, String> {
    let rest = key
        .strip_prefix(PREFIX)
        .ok_or_else(|| INVALID_KEY_STRING.to_string())?;
    base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(rest)
        .map_err(|_| INVALID_KEY_STRING.to_string())
}

fn aead_key(unlock: &[u8]) -> LessSafeKey {
    let prk = Salt::new(HKDF_SHA256, b"berth swarm autolock v1").extract(unlock);
    let okm = prk
        .expand(&[b"manager key encryption"], &AES_256_GCM)
        .expect("HKDF output of AES-256 key length");
    let mut bytes = [0u8; 32];
    okm.fill(&mut bytes).expect("HKDF fill of 32 bytes");
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &bytes).expect("AES-256 key"))
}

/// Encrypts `plain` under the unlock key: base64 of nonce ‖ ciphertext ‖ tag.
pub fn seal(unlock: &[u8], plain: &[u8]) -> anyhow::Result<String> {
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| anyhow::anyhow!("no random nonce"))?;
    let mut buf = plain.to_vec();
    aead_key(unlock)
        .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut buf)
        .map_err(|_| anyhow::anyhow!("sealing the manager key"))?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&buf);
    Ok(base64::engine::general_purpose::STANDARD.encode(out))
}

/// Decrypts what [`seal`] made; `None` for a wrong key or damaged data.
pub fn open(unlock: &[u8], sealed: &str) -> Option<Vec<u8>> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(sealed)
        .ok()?;
    if raw.len() < NONCE_LEN {
        return None;
    }
    let (nonce, rest) = raw.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
    let mut buf = rest.to_vec();
    let plain = aead_key(unlock)
        .open_in_place(nonce, Aad::empty(), &mut buf)
        .ok()?;
    Some(plain.to_vec())
}

/// The data-encryption key of a manager's Raft database (log entries, vote, snapshots,
/// objects): 32 random bytes, AES-256-GCM, kept next to the TLS key in the identity file and
/// sealed with it under autolock.
pub struct DataKey(LessSafeKey);

/// What marks an encrypted value in the Raft database (JSON never starts with a NUL).
const DATA_MAGIC: &[u8] = b"\0BK1";

impl DataKey {
    /// A new random key, base64 as the identity file keeps it.
    pub fn generate() -> String {
        let mut key = [0u8; 32];
        SystemRandom::new()
            .fill(&mut key)
            .expect("system random number generator");
        base64::engine::general_purpose::STANDARD.encode(key)
    }

    pub fn from_base64(key: &str) -> anyhow::Result<DataKey> {
        let bytes = base64::engine::general_purpose::STANDARD.decode(key)?;
        let key = UnboundKey::new(&AES_256_GCM, &bytes)
            .map_err(|_| anyhow::anyhow!("the Raft data key is not 32 bytes"))?;
        Ok(DataKey(LessSafeKey::new(key)))
    }

    /// `magic ‖ nonce ‖ ciphertext ‖ tag`.
    pub fn encrypt(&self, plain: &[u8]) -> anyhow::Result<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| anyhow::anyhow!("no random nonce"))?;
        // One buffer of the final size, sealed in place: snapshots are megabytes.
        let head = DATA_MAGIC.len() + NONCE_LEN;
        let mut out = Vec::with_capacity(head + plain.len() + self.0.algorithm().tag_len());
        out.extend_from_slice(DATA_MAGIC);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plain);
        let tag = self
            .0
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::empty(),
                &mut out[head..],
            )
            .map_err(|_| anyhow::anyhow!("encrypting Raft data"))?;
        out.extend_from_slice(tag.as_ref());
        Ok(out)
    }

    /// Whether a stored value is encrypted (values written before the key existed are not).
    pub fn is_encrypted(raw: &[u8]) -> bool {
        raw.starts_with(DATA_MAGIC)
    }

    pub fn decrypt(&self, raw: &[u8]) -> anyhow::Result<Vec<u8>> {
        let rest = raw
            .strip_prefix(DATA_MAGIC)
            .filter(|r| r.len() >= NONCE_LEN)
            .ok_or_else(|| anyhow::anyhow!("not an encrypted Raft value"))?;
        let (nonce, rest) = rest.split_at(NONCE_LEN);
        let nonce =
            Nonce::try_assume_unique_for_key(nonce).map_err(|_| anyhow::anyhow!("bad nonce"))?;
        let mut buf = rest.to_vec();
        let plain = self
            .0
            .open_in_place(nonce, Aad::empty(), &mut buf)
            .map_err(|_| anyhow::anyhow!("Raft data does not decrypt with this node's key"))?;
        Ok(plain.to_vec())
    }
}

/// The unlock key in force per swarm directory, in memory only (`None`: keys are stored plain).
static KEYS: Mutex<Option<HashMap<PathBuf, Vec<u8>>>> = Mutex::new(None);

/// Sets (or clears) the key the identity in `dir` is sealed with.
pub fn remember(dir: &Path, key: Option<Vec<u8>>) {
    let mut keys = KEYS.lock().unwrap_or_else(|e| e.into_inner());
    let map = keys.get_or_insert_with(HashMap::new);
    match key {
        Some(k) => map.insert(dir.to_path_buf(), k),
        None => map.remove(dir),
    };
}

pub fn remembered(dir: &Path) -> Option<Vec<u8>> {
    let keys = KEYS.lock().unwrap_or_else(|e| e.into_inner());
    keys.as_ref().and_then(|m| m.get(dir).cloned())
}

/// This manager's Raft data key, made (and saved with its identity) at its first start; `None`
/// for a node without an identity file.
pub fn manager_data_key(dir: &Path) -> anyhow::Result<Option<DataKey>> {
    let Some(mut identity) = crate::pki::Identity::load(dir) else {
        return Ok(None);
    };
    if identity.is_sealed() {
        anyhow::bail!("{SWARM_LOCKED}");
    }
    if identity.data_key.is_empty() {
        identity.data_key = DataKey::generate();
        identity.save(dir)?;
    }
    DataKey::from_base64(&identity.data_key).map(Some)
}

/// Whether the cluster wants managers locked, and with which key.
pub fn wanted(cluster: &Cluster) -> Option<String> {
    let on = cluster.spec["EncryptionConfig"]["AutoLockManagers"] == true;
    (on && !cluster.unlock_key.is_empty()).then(|| cluster.unlock_key.clone())
}

/// Reseals this manager's identity in `dir` as the cluster wants it (no-op when it already is).
pub fn sync(dir: &Path, cluster: &Cluster) -> anyhow::Result<()> {
    let want = match wanted(cluster) {
        Some(k) => Some(parse_key(&k).map_err(anyhow::Error::msg)?),
        None => None,
    };
    if remembered(dir) == want {
        return Ok(());
    }
    // The identity in use (a renewal may be newer than what a concurrent load read).
    let in_use = crate::certs::live(dir).and_then(|l| l.identity());
    let Some(identity) = in_use.or_else(|| crate::pki::Identity::load(dir)) else {
        // Not issued yet (a manager still starting): it is written sealed when it is.
        remember(dir, want);
        return Ok(());
    };
    remember(dir, want);
    identity.save(dir)
}

/// Keeps this manager's key sealed as the cluster wants, whichever manager changed the setting.
pub(crate) async fn follow(
    dir: PathBuf,
    store: crate::store::Store,
    stop: tokio_util::sync::CancellationToken,
) {
    loop {
        if let Some(cluster) = store.view(|s| s.cluster().cloned())
            && let Err(e) = sync(&dir, &cluster)
        {
            tracing::warn!(error = %e, "resealing the manager key for autolock");
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_have_swarmkit_shape_and_seal_only_for_their_key() {
        let key = new_key();
        assert!(key.starts_with(PREFIX), "{key}");
        let bytes = parse_key(&key).unwrap();
        assert_eq!(bytes.len(), 32);
        assert_eq!(parse_key("SWMKEY-1-!!").unwrap_err(), INVALID_KEY_STRING);
        assert_eq!(parse_key("nope").unwrap_err(), INVALID_KEY_STRING);
        let sealed = seal(&bytes, b"secret key pem").unwrap();
        assert!(!sealed.contains("secret"));
        assert_eq!(open(&bytes, &sealed).unwrap(), b"secret key pem");
        let other = parse_key(&new_key()).unwrap();
        assert!(open(&other, &sealed).is_none());
        assert_ne!(seal(&bytes, b"x").unwrap(), seal(&bytes, b"x").unwrap());
        let dek = DataKey::from_base64(&DataKey::generate()).unwrap();
        let raw = dek.encrypt(br#"{"a":1}"#).unwrap();
        assert!(DataKey::is_encrypted(&raw) && !DataKey::is_encrypted(br#"{"a":1}"#));
        assert_eq!(dek.decrypt(&raw).unwrap(), br#"{"a":1}"#);
        let other = DataKey::from_base64(&DataKey::generate()).unwrap();
        assert!(other.decrypt(&raw).is_err());
    }
}
