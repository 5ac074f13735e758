//! Berth's volumes: the `local` driver's store under `<data-root>/volumes/<name>/` (metadata
//! written atomically, driver options mounted at first use), Docker's rules for volume names,
//! and the parsing of `-v`, `--mount` and `--tmpfs` into typed mounts with Docker's messages.
//! Which containers use a volume is not stored here: it is derived from container records.

pub mod copy;
pub mod error;
pub mod spec;
pub mod store;

pub use error::{Result, VolumeError};
pub use spec::{MountEntry, MountKind, Planned};
pub use store::{ANONYMOUS_LABEL, VolumeMeta, VolumeStore};
