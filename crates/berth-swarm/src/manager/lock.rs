//! A manager locked by autolock: its swarm state is on disk but its key is sealed, so nothing
//! of the swarm runs until `swarm unlock` gives the unlock key ([`crate::autolock`]).

use super::{LocalNode, Swarm, SwarmError};
use crate::autolock::{INVALID_KEY, LEAVE_LOCKED, NOT_LOCKED};

impl Swarm {
    /// The node this daemon would be, while it waits to be unlocked.
    pub async fn locked(&self) -> Option<LocalNode> {
        self.locked.lock().await.clone()
    }

    /// `swarm unlock`: opens the sealed key and starts the manager as a restart would have.
    pub async fn unlock(&self, key: &str) -> Result<(), SwarmError> {
        // Lock order as everywhere else: `active`, then `locked`.
        let mut guard = self.active.lock().await;
        let mut locked = self.locked.lock().await;
        let Some(local) = locked.clone() else {
            return Err(SwarmError::Invalid(NOT_LOCKED.into()));
        };
        let bytes = crate::autolock::parse_key(key).map_err(SwarmError::Invalid)?;
        let sealed = crate::pki::Identity::load_raw(&self.dir)
            .ok_or_else(|| anyhow::anyhow!("the manager's identity is missing"))?;
        if crate::autolock::open(&bytes, &sealed.key_sealed).is_none() {
            return Err(SwarmError::WrongKey(INVALID_KEY.into()));
        }
        crate::autolock::remember(&self.dir, Some(bytes));
        let active = match self.start(local, false).await {
            Ok(a) => a,
            Err(e) => {
                crate::autolock::remember(&self.dir, None);
                return Err(e.into());
            }
        };
        if let Err(e) = self.start_listener(&active).await {
            super::stop(&active).await;
            crate::autolock::remember(&self.dir, None);
            return Err(e.into());
        }
        self.register_in_background(&active);
        *guard = Some(active);
        *locked = None;
        Ok(())
    }

    /// Reseals this manager's key as the cluster now wants it (after `swarm update`).
    pub async fn reseal(&self) -> anyhow::Result<()> {
        let Some(h) = self.handle().await else {
            return Ok(());
        };
        match h.store().view(|s| s.cluster().cloned()) {
            Some(cluster) => crate::autolock::sync(&self.dir, &cluster),
            None => Ok(()),
        }
    }

    /// `swarm leave` on a locked node: only with `--force`, which drops the swarm's state.
    pub(super) async fn leave_locked(&self, force: bool) -> Result<(), SwarmError> {
        if !force {
            return Err(SwarmError::Unavailable(LEAVE_LOCKED.into()));
        }
        *self.locked.lock().await = None;
        crate::agent::remove_all(self.executor.as_ref()).await;
        crate::autolock::remember(&self.dir, None);
        std::fs::remove_dir_all(&self.dir).map_err(anyhow::Error::from)?;
        Ok(())
    }
}
