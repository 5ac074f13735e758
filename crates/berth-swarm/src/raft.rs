//! The managers' replicated log: openraft 0.9 (pinned; see docs/architecture.md) with its log
//! and state machine durable in one redb file. The state machine is the [`Store`]: applying an
//! entry changes the in-memory state and writes the changed objects, the applied log id and
//! the membership in the same redb transaction, so a restart (even after SIGKILL) reopens the
//! state as of the last applied entry without replaying the log.
//!
//! This session's clusters have one manager; [`NoPeers`] is the network for that. A transport
//! between managers (mTLS) plugs in as another `RaftNetworkFactory` without changing storage.

// openraft's storage traits return its `StorageError` (large); the helpers here return it too
// rather than boxing and unboxing at every trait method.
#![allow(clippy::result_large_err)]

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io::Cursor;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::storage::{LogFlushed, RaftLogStorage, RaftStateMachine};
use openraft::{
    AnyError, BasicNode, Entry, EntryPayload, LogId, LogState, RaftLogReader, RaftSnapshotBuilder,
    Snapshot, SnapshotMeta, StorageError, StorageIOError, StoredMembership, Vote,
};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::autolock::DataKey;
use crate::store::{Command, Conflict, State, Store};
use crate::types::{Kind, Object};

pub type NodeId = u64;

/// What applying a command answered: committed entries can still be refused by the state
/// machine (a stale version, a taken name), and every replica refuses them alike.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome(pub Result<(), Conflict>);

openraft::declare_raft_types!(
    pub TypeConfig:
        D = Command,
        R = Outcome,
);

pub type Raft = openraft::Raft<TypeConfig>;
type SError = StorageError<NodeId>;

const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const OBJECTS: TableDefinition<&str, &[u8]> = TableDefinition::new("objects");

fn io(e: impl ToString) -> AnyError {
    AnyError::error(e)
}
fn read_err(e: impl ToString) -> SError {
    StorageIOError::read(io(e)).into()
}
fn write_err(e: impl ToString) -> SError {
    StorageIOError::write(io(e)).into()
}

/// The Raft database and the key its values are encrypted with ([`crate::autolock::DataKey`];
/// `None`: values are plain JSON, as in databases made before the key existed, and in tests).
/// Values written before the key existed stay readable; everything written with it is
/// encrypted.
pub struct Db {
    db: Database,
    key: Option<DataKey>,
}

impl std::ops::Deref for Db {
    type Target = Database;
    fn deref(&self) -> &Database {
        &self.db
    }
}

impl Db {
    fn seal(&self, plain: Vec<u8>) -> Result<Vec<u8>, SError> {
        match &self.key {
            Some(k) => k.encrypt(&plain).map_err(write_err),
            None => Ok(plain),
        }
    }

    /// [`Self::seal`] for a borrowed value: no copy when there is no key.
    fn seal_slice<'a>(&self, plain: &'a [u8]) -> Result<Cow<'a, [u8]>, SError> {
        match &self.key {
            Some(k) => k.encrypt(plain).map(Cow::Owned).map_err(write_err),
            None => Ok(Cow::Borrowed(plain)),
        }
    }

    fn unseal<'a>(&self, raw: &'a [u8]) -> Result<Cow<'a, [u8]>, SError> {
        if !DataKey::is_encrypted(raw) {
            return Ok(Cow::Borrowed(raw));
        }
        match &self.key {
            Some(k) => k.decrypt(raw).map(Cow::Owned).map_err(read_err),
            None => Err(read_err(
                "the Raft data is encrypted and this node has no key for it",
            )),
        }
    }
}

/// Bytes of pages redb keeps in memory for the Raft database.
const RAFT_DB_CACHE: usize = 4 << 20;

/// Opens (or creates) the Raft database with its tables, values in plain JSON.
pub fn open_db(path: &Path) -> anyhow::Result<Arc<Db>> {
    open_db_with(path, None)
}

/// Opens (or creates) the Raft database, encrypting what it writes with `key`.
pub fn open_db_with(path: &Path, key: Option<DataKey>) -> anyhow::Result<Arc<Db>> {
    use anyhow::Context;
    // redb caches up to 1 GiB of pages by default, and keeps what Raft wrote (log entries,
    // snapshots) there: with 1,000 tasks that was tens of MiB of a manager's RSS. The log is
    // read back rarely (followers catching up), so a small cache costs little.
    let db = redb::Builder::new()
        .set_cache_size(RAFT_DB_CACHE)
        .create(path)
        .with_context(|| format!("opening {}", path.display()))?;
    let txn = db.begin_write()?;
    txn.open_table(LOG)?;
    txn.open_table(META)?;
    txn.open_table(OBJECTS)?;
    txn.commit()?;
    Ok(Arc::new(Db { db, key }))
}

fn get_meta<T: for<'de> Deserialize<'de>>(db: &Db, key: &str) -> Result<Option<T>, SError> {
    let txn = db.begin_read().map_err(read_err)?;
    let table = txn.open_table(META).map_err(read_err)?;
    match table.get(key).map_err(read_err)? {
        Some(v) => serde_json::from_slice(&db.unseal(v.value())?)
            .map(Some)
            .map_err(read_err),
        None => Ok(None),
    }
}

fn put_meta<T: Serialize>(db: &Db, key: &str, value: &T) -> Result<(), SError> {
    let bytes = db.seal(serde_json::to_vec(value).map_err(write_err)?)?;
    let txn = db.begin_write().map_err(write_err)?;
    txn.open_table(META)
        .map_err(write_err)?
        .insert(key, bytes.as_slice())
        .map_err(write_err)?;
    txn.commit().map_err(write_err)
}

type SnapshotRecord = (SnapshotMeta<NodeId, BasicNode>, Vec<u8>);

/// Keeps the last snapshot: its meta as JSON, its body as the bytes openraft was handed
/// (each sealed like every value). Not one JSON value, as it was: serde writes a `Vec<u8>` as
/// an array of numbers, about four times the bytes, and with 1,000 tasks building that array
/// (and its encrypted copy) was the largest allocation a manager made, at every snapshot.
fn put_snapshot(
    db: &Db,
    meta: &SnapshotMeta<NodeId, BasicNode>,
    data: &[u8],
) -> Result<(), SError> {
    let meta_bytes = db.seal(serde_json::to_vec(meta).map_err(write_err)?)?;
    let data_bytes = db.seal_slice(data)?;
    let txn = db.begin_write().map_err(write_err)?;
    {
        let mut table = txn.open_table(META).map_err(write_err)?;
        table
            .insert(SNAPSHOT_META, meta_bytes.as_slice())
            .map_err(write_err)?;
        table
            .insert(SNAPSHOT_DATA, &*data_bytes)
            .map_err(write_err)?;
        // The older single-value form, if this database still had it.
        table.remove(LEGACY_SNAPSHOT).map_err(write_err)?;
    }
    txn.commit().map_err(write_err)
}

/// The last snapshot kept by [`put_snapshot`] (or in the single-value form of databases
/// written before it).
fn get_snapshot(db: &Db) -> Result<Option<SnapshotRecord>, SError> {
    let Some(meta) = get_meta(db, SNAPSHOT_META)? else {
        return get_meta(db, LEGACY_SNAPSHOT);
    };
    let txn = db.begin_read().map_err(read_err)?;
    let table = txn.open_table(META).map_err(read_err)?;
    let Some(raw) = table.get(SNAPSHOT_DATA).map_err(read_err)? else {
        return Ok(None);
    };
    let data = db.unseal(raw.value())?.into_owned();
    Ok(Some((meta, data)))
}

const SNAPSHOT_META: &str = "snapshot_meta";
const SNAPSHOT_DATA: &str = "snapshot_data";
const LEGACY_SNAPSHOT: &str = "snapshot";

/// The log: entries by index, the vote, the committed id and the last purged id.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Db>,
}

impl LogStore {
    pub fn new(db: Arc<Db>) -> LogStore {
        LogStore { db }
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, SError> {
        let txn = self.db.begin_read().map_err(read_err)?;
        let table = txn.open_table(LOG).map_err(read_err)?;
        let start = match range.start_bound() {
            Bound::Included(&n) => n,
            Bound::Excluded(&n) => n + 1,
            Bound::Unbounded => 0,
        };
        let mut out = Vec::new();
        for row in table.range(start..).map_err(read_err)? {
            let (k, v) = row.map_err(read_err)?;
            if !range.contains(&k.value()) {
                break;
            }
            out.push(serde_json::from_slice(&self.db.unseal(v.value())?).map_err(read_err)?);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, SError> {
        let last_purged: Option<LogId<NodeId>> = get_meta(&self.db, "last_purged")?;
        let txn = self.db.begin_read().map_err(read_err)?;
        let table = txn.open_table(LOG).map_err(read_err)?;
        let last = match table.last().map_err(read_err)? {
            Some((_, v)) => {
                let e: Entry<TypeConfig> =
                    serde_json::from_slice(&self.db.unseal(v.value())?).map_err(read_err)?;
                Some(e.log_id)
            }
            None => last_purged,
        };
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), SError> {
        put_meta(&self.db, "vote", vote)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, SError> {
        get_meta(&self.db, "vote")
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> Result<(), SError> {
        put_meta(&self.db, "committed", &committed)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, SError> {
        Ok(get_meta::<Option<LogId<NodeId>>>(&self.db, "committed")?.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), SError>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        // One durable transaction (redb's default immediate durability fsyncs on commit):
        // the entries are on disk before Raft counts them.
        let txn = self.db.begin_write().map_err(write_err)?;
        {
            let mut table = txn.open_table(LOG).map_err(write_err)?;
            for entry in entries {
                let bytes = self
                    .db
                    .seal(serde_json::to_vec(&entry).map_err(write_err)?)?;
                table
                    .insert(entry.log_id.index, bytes.as_slice())
                    .map_err(write_err)?;
            }
        }
        txn.commit().map_err(write_err)?;
        callback.log_io_completed(Ok(()));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), SError> {
        remove_log_range(&self.db, log_id.index..)
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), SError> {
        put_meta(&self.db, "last_purged", &log_id)?;
        remove_log_range(&self.db, ..=log_id.index)
    }
}

fn remove_log_range(db: &Db, range: impl RangeBounds<u64>) -> Result<(), SError> {
    let txn = db.begin_write().map_err(write_err)?;
    {
        let mut table = txn.open_table(LOG).map_err(write_err)?;
        table.retain_in(range, |_, _| false).map_err(write_err)?;
    }
    txn.commit().map_err(write_err)
}

/// What a snapshot holds: the whole state, where it was taken, and the membership then.
#[derive(Serialize, Deserialize)]
struct SnapshotBody {
    /// A snapshot of the store (it shares the store's maps, see `store::Objects`).
    state: Arc<State>,
    applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, BasicNode>,
}

/// The state machine over the [`Store`], durable in the `objects` and `meta` tables.
pub struct StateMachine {
    db: Arc<Db>,
    store: Store,
    applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, BasicNode>,
}

fn object_key(kind: Kind, id: &str) -> String {
    format!("{}/{id}", kind.as_str())
}

impl StateMachine {
    /// Loads the state as of the last applied entry into `store`.
    pub fn open(db: Arc<Db>, store: Store) -> anyhow::Result<StateMachine> {
        let mut state = State::default();
        {
            let txn = db.begin_read()?;
            let table = txn.open_table(OBJECTS)?;
            for row in table.iter()? {
                let (_, v) = row?;
                let plain = db.unseal(v.value()).map_err(|e| anyhow::anyhow!("{e}"))?;
                let object: Object = serde_json::from_slice(&plain)?;
                state.put_object(object);
            }
        }
        let applied: Option<LogId<NodeId>> = get_meta::<Option<_>>(&db, "applied")
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .flatten();
        let membership = get_meta(&db, "membership")
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .unwrap_or_default();
        state.index = applied.map(|l| l.index).unwrap_or_default();
        store.replace(state);
        Ok(StateMachine {
            db,
            store,
            applied,
            membership,
        })
    }

    /// Writes the listed objects (or their absence), the applied id and the membership in one
    /// transaction.
    fn persist(&self, touched: &[(Kind, String)], full: bool) -> Result<(), SError> {
        // Only the objects written (a copy of the whole state per entry made each commit
        // O(objects): with 1,000 tasks, reports of their states cost seconds of copying).
        let objects: Vec<(Kind, String, Option<Object>)> = self.store.view(|s| {
            let keys = if full { s.all_keys() } else { touched.to_vec() };
            keys.into_iter()
                .map(|(kind, id)| {
                    let o = s.get(kind, &id);
                    (kind, id, o)
                })
                .collect()
        });
        let txn = self.db.begin_write().map_err(write_err)?;
        {
            let mut table = txn.open_table(OBJECTS).map_err(write_err)?;
            if full {
                table.retain(|_, _| false).map_err(write_err)?;
            }
            for (kind, id, object) in &objects {
                let key = object_key(*kind, id);
                match object {
                    Some(o) => {
                        let bytes = self.db.seal(serde_json::to_vec(o).map_err(write_err)?)?;
                        table
                            .insert(key.as_str(), bytes.as_slice())
                            .map_err(write_err)?;
                    }
                    None => drop(table.remove(key.as_str()).map_err(write_err)?),
                }
            }
            let mut meta = txn.open_table(META).map_err(write_err)?;
            let applied = self
                .db
                .seal(serde_json::to_vec(&self.applied).map_err(write_err)?)?;
            meta.insert("applied", applied.as_slice())
                .map_err(write_err)?;
            let membership = self
                .db
                .seal(serde_json::to_vec(&self.membership).map_err(write_err)?)?;
            meta.insert("membership", membership.as_slice())
                .map_err(write_err)?;
        }
        txn.commit().map_err(write_err)
    }

    fn snapshot_body(&self) -> SnapshotBody {
        SnapshotBody {
            state: self.store.snapshot(),
            applied: self.applied,
            membership: self.membership.clone(),
        }
    }
}

/// Builds snapshots from a copy of the state taken when asked.
pub struct SnapshotBuilder {
    db: Arc<Db>,
    body: SnapshotBody,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, SError> {
        let data = serde_json::to_vec(&self.body).map_err(write_err)?;
        let snapshot_id = match self.body.applied {
            Some(l) => format!("{}-{}-{}", l.leader_id, l.index, rand::random::<u32>()),
            None => format!("empty-{}", rand::random::<u32>()),
        };
        let meta = SnapshotMeta {
            last_log_id: self.body.applied,
            last_membership: self.body.membership.clone(),
            snapshot_id,
        };
        put_snapshot(&self.db, &meta, &data)?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>), SError> {
        Ok((self.applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Outcome>, SError>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut out = Vec::new();
        let mut touched = Vec::new();
        for entry in entries {
            self.applied = Some(entry.log_id);
            match entry.payload {
                EntryPayload::Blank => out.push(Outcome(Ok(()))),
                EntryPayload::Normal(cmd) => {
                    touched.extend(cmd.keys());
                    out.push(Outcome(self.store.apply(entry.log_id.index, &cmd)));
                }
                EntryPayload::Membership(m) => {
                    self.membership = StoredMembership::new(Some(entry.log_id), m);
                    out.push(Outcome(Ok(())));
                }
            }
        }
        self.persist(&touched, false)?;
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            db: self.db.clone(),
            body: self.snapshot_body(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, SError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), SError> {
        let data = snapshot.into_inner();
        let body: SnapshotBody = serde_json::from_slice(&data).map_err(read_err)?;
        self.applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        let mut state = Arc::unwrap_or_clone(body.state);
        state.index = self.applied.map(|l| l.index).unwrap_or_default();
        self.store.replace(state);
        self.persist(&[], true)?;
        put_snapshot(&self.db, meta, &data)
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, SError> {
        Ok(get_snapshot(&self.db)?.map(|(meta, data)| Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}

/// The network of a one-manager cluster: there is nobody to call, and Raft never calls.
pub struct NoPeers;

#[derive(Debug, thiserror::Error)]
#[error("no transport between managers yet: raft node {0} is unreachable")]
struct NoTransport(NodeId);

impl RaftNetworkFactory<TypeConfig> for NoPeers {
    type Network = NoPeer;
    async fn new_client(&mut self, target: NodeId, _node: &BasicNode) -> NoPeer {
        NoPeer(target)
    }
}

pub struct NoPeer(NodeId);

impl NoPeer {
    fn unreachable<E: std::error::Error>(&self) -> RPCError<NodeId, BasicNode, E> {
        RPCError::Unreachable(Unreachable::new(&NoTransport(self.0)))
    }
}

impl RaftNetwork<TypeConfig> for NoPeer {
    async fn append_entries(
        &mut self,
        _rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        Err(self.unreachable())
    }
    async fn install_snapshot(
        &mut self,
        _rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        Err(self.unreachable())
    }
    async fn vote(
        &mut self,
        _rpc: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let _ = NetworkError::new(&NoTransport(self.0));
        Err(self.unreachable())
    }
}

/// Starts the Raft node of a manager on its database, electing itself when it is the only
/// member. `bootstrap` makes a new one-member cluster when the log is empty.
pub async fn start(
    db: Arc<Db>,
    store: Store,
    id: NodeId,
    addr: &str,
    bootstrap: bool,
) -> anyhow::Result<Raft> {
    start_with(db, store, id, addr, bootstrap, NoPeers).await
}

/// Like [`start`] over a network to other managers; waits for leadership only when this
/// manager is the cluster's only voter (a member of several waits for no one: the others may
/// be down, and reads work without a leader).
pub async fn start_with<N: RaftNetworkFactory<TypeConfig>>(
    db: Arc<Db>,
    store: Store,
    id: NodeId,
    addr: &str,
    bootstrap: bool,
    network: N,
) -> anyhow::Result<Raft> {
    let config = openraft::Config {
        cluster_name: "berth-swarm".into(),
        heartbeat_interval: 200,
        election_timeout_min: 400,
        election_timeout_max: 800,
        // Compaction: a snapshot every 1,000 entries, then the log before it is purged
        // (keeping a few hundred for followers that lag).
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(1000),
        max_in_snapshot_log_to_keep: 500,
        ..Default::default()
    }
    .validate()?;
    let sm = StateMachine::open(db.clone(), store)?;
    let raft = Raft::new(id, Arc::new(config), network, LogStore::new(db), sm).await?;
    if bootstrap && !raft.is_initialized().await? {
        let members = BTreeMap::from([(id, BasicNode::new(addr))]);
        raft.initialize(members).await?;
    }
    let voters: Vec<NodeId> = raft
        .metrics()
        .borrow()
        .membership_config
        .membership()
        .voter_ids()
        .collect();
    if voters != [id] {
        return Ok(raft);
    }
    raft.wait(Some(Duration::from_secs(10)))
        .current_leader(id, "this manager becomes leader")
        .await?;
    Ok(raft)
}

/// `swarm init --force-new-cluster`: rewrites a stopped manager's Raft data so that it is the
/// only member, keeping the state it applied. The log is dropped (a snapshot of the applied
/// state replaces it, for managers that join later); the vote stays, so terms only grow.
pub fn force_new_cluster(db: &Arc<Db>, id: NodeId, addr: &str) -> anyhow::Result<()> {
    let err = |e: SError| anyhow::anyhow!("{e}");
    let applied: Option<LogId<NodeId>> =
        get_meta::<Option<_>>(db, "applied").map_err(err)?.flatten();
    let membership = StoredMembership::new(
        applied,
        openraft::Membership::new(
            vec![std::collections::BTreeSet::from([id])],
            BTreeMap::from([(id, BasicNode::new(addr))]),
        ),
    );
    let store = Store::default();
    let sm = StateMachine::open(db.clone(), store.clone())?;
    let body = SnapshotBody {
        state: store.snapshot(),
        applied: sm.applied,
        membership: membership.clone(),
    };
    let data = serde_json::to_vec(&body)?;
    let meta = SnapshotMeta {
        last_log_id: applied,
        last_membership: membership.clone(),
        snapshot_id: format!("force-new-cluster-{}", rand::random::<u32>()),
    };
    let txn = db.begin_write()?;
    txn.open_table(LOG)?.retain(|_, _| false)?;
    txn.commit()?;
    put_meta(db, "membership", &membership).map_err(err)?;
    put_meta(db, "last_purged", &applied).map_err(err)?;
    put_meta(db, "committed", &applied).map_err(err)?;
    put_snapshot(db, &meta, &data).map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Op;
    use crate::types::{Meta, Object, Secret};

    fn secret(id: &str) -> Command {
        Command::one(Op::Create(Object::Secret(Secret {
            meta: Meta::new(id.into()),
            spec: serde_json::json!({"Name": id}),
        })))
    }

    /// Fresh stores for openraft's storage suite; the guard keeps the directory alive.
    struct Builder;

    impl openraft::testing::StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir>
        for Builder
    {
        async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), SError> {
            let dir = tempfile::tempdir().map_err(write_err)?;
            let db = open_db(&dir.path().join("raft.redb")).map_err(write_err)?;
            let sm = StateMachine::open(db.clone(), Store::default()).map_err(write_err)?;
            Ok((dir, LogStore::new(db), sm))
        }
    }

    #[test]
    fn openraft_storage_suite() {
        openraft::testing::Suite::test_all(Builder).unwrap();
    }

    #[tokio::test]
    async fn commits_survive_a_restart_and_conflicts_are_answers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("raft.redb");
        {
            let store = Store::default();
            let raft = start(open_db(&path).unwrap(), store.clone(), 1, "a", true)
                .await
                .unwrap();
            let r = raft.client_write(secret("s1")).await.unwrap();
            assert_eq!(r.data, Outcome(Ok(())));
            let r = raft.client_write(secret("s1")).await.unwrap();
            assert!(matches!(r.data.0, Err(Conflict::Exists { .. })));
            assert!(store.view(|s| s.secrets.contains_key("s1")));
            raft.shutdown().await.unwrap();
        }
        let store = Store::default();
        let raft = start(open_db(&path).unwrap(), store.clone(), 1, "a", true)
            .await
            .unwrap();
        assert!(store.view(|s| s.secrets.contains_key("s1")));
        raft.client_write(secret("s2")).await.unwrap();
        assert_eq!(store.view(|s| s.secrets.len()), 2);
        raft.shutdown().await.unwrap();
    }

    #[tokio::test]
    async fn snapshots_compact_the_log_and_restore() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("raft.redb");
        let store = Store::default();
        let db = open_db(&path).unwrap();
        let raft = start(db.clone(), store.clone(), 1, "a", true)
            .await
            .unwrap();
        for i in 0..20 {
            raft.client_write(secret(&format!("s{i}"))).await.unwrap();
        }
        raft.trigger().snapshot().await.unwrap();
        raft.wait(Some(Duration::from_secs(10)))
            .metrics(|m| m.snapshot.is_some(), "snapshot built")
            .await
            .unwrap();
        raft.trigger().purge_log(15).await.unwrap();
        raft.wait(Some(Duration::from_secs(10)))
            .metrics(|m| m.purged.is_some_and(|p| p.index >= 15), "log purged")
            .await
            .unwrap();
        raft.shutdown().await.unwrap();
        drop(raft);
        let mut sm = StateMachine::open(db.clone(), Store::default()).unwrap();
        let snap = sm.get_current_snapshot().await.unwrap().unwrap();
        let other = Store::default();
        let mut fresh = StateMachine::open(
            open_db(&dir.path().join("other.redb")).unwrap(),
            other.clone(),
        )
        .unwrap();
        fresh
            .install_snapshot(&snap.meta, snap.snapshot)
            .await
            .unwrap();
        assert_eq!(other.view(|s| s.secrets.len()), 20);
    }

    /// A snapshot is kept as its bytes (sealed when the store is encrypted), not as a JSON
    /// array of numbers; one kept in the older single-value form still reads.
    #[test]
    fn snapshots_are_kept_as_their_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let key = DataKey::from_base64(&DataKey::generate()).unwrap();
        let db = open_db_with(&dir.path().join("raft.redb"), Some(key)).unwrap();
        let meta = SnapshotMeta {
            last_log_id: None,
            last_membership: StoredMembership::default(),
            snapshot_id: "s-1".into(),
        };
        let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
        put_snapshot(&db, &meta, &data).unwrap();
        let txn = db.begin_read().unwrap();
        let table = txn.open_table(META).unwrap();
        let stored = table.get(SNAPSHOT_DATA).unwrap().unwrap().value().to_vec();
        assert!(DataKey::is_encrypted(&stored), "sealed like every value");
        assert!(
            stored.len() < data.len() + 64,
            "{} bytes stored for {}",
            stored.len(),
            data.len()
        );
        drop((table, txn));
        let (m, d) = get_snapshot(&db).unwrap().unwrap();
        assert_eq!((m.snapshot_id.as_str(), d == data), ("s-1", true));

        let legacy = open_db(&dir.path().join("legacy.redb")).unwrap();
        put_meta(&legacy, LEGACY_SNAPSHOT, &(meta.clone(), &data[..100])).unwrap();
        let (m, d) = get_snapshot(&legacy).unwrap().unwrap();
        assert_eq!((m.snapshot_id.as_str(), &d[..]), ("s-1", &data[..100]));
        put_snapshot(&legacy, &meta, &data[..10]).unwrap();
        assert!(
            get_meta::<SnapshotRecord>(&legacy, LEGACY_SNAPSHOT)
                .unwrap()
                .is_none()
        );
        assert_eq!(get_snapshot(&legacy).unwrap().unwrap().1, &data[..10]);
    }
}
