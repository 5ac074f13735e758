//! Layer unpacking into overlayfs format.
//!
//! A layer is a tar stream, plain or gzip/zstd-compressed (detected by magic bytes). Entries are
//! created relative to file descriptors of their parent directories, which are opened with
//! `openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)`: the kernel then refuses any resolution
//! that would leave the layer directory, whatever symlinks earlier entries planted. Paths are
//! also checked lexically first so that `..` and absolute names are rejected with a clear message
//! before anything is touched.
//!
//! OCI whiteouts become overlayfs whiteouts: `.wh.NAME` is a 0:0 character device `NAME`, and
//! `.wh..wh..opq` sets `trusted.overlay.opaque=y` on its directory.
//!
//! The DiffID (sha256 of the uncompressed tar, including its end-of-archive padding) is computed
//! while unpacking, so a layer is read exactly once.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use rustix::fs::{
    AtFlags, FileType, Gid, Mode, OFlags, ResolveFlags, StatxFlags, Timespec, Timestamps, Uid,
    XattrFlags,
};

use crate::digest::{Digest, HashingReader};
use crate::error::{ImageError, Result};

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// Detects the compression from the first bytes of a stream.
    pub fn detect(magic: &[u8]) -> Compression {
        if magic.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }

    /// The OCI layer media type for a blob with this compression.
    pub fn oci_media_type(self) -> &'static str {
        match self {
            Compression::None => "application/vnd.oci.image.layer.v1.tar",
            Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }
}

/// What unpacking a layer produced.
#[derive(Debug, Clone)]
pub struct UnpackedLayer {
    /// sha256 of the uncompressed tar stream.
    pub diff_id: Digest,
    /// Bytes of regular file content in the layer.
    pub size: u64,
    pub compression: Compression,
}

/// Wraps `reader` in the decompressor its magic bytes call for.
pub fn decompress<'a, R: BufRead + 'a>(
    mut reader: R,
) -> io::Result<(Compression, Box<dyn Read + 'a>)> {
    let compression = Compression::detect(reader.fill_buf()?);
    let out: Box<dyn Read + 'a> = match compression {
        Compression::None => Box::new(reader),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(reader)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(reader)?),
    };
    Ok((compression, out))
}

/// Computes the DiffID of a layer blob without unpacking it.
pub fn diff_id_of(reader: &mut dyn Read, layer: &str) -> Result<(Digest, Compression)> {
    let stream_err = |source| ImageError::LayerStream {
        layer: layer.to_string(),
        source,
    };
    let (compression, inner) =
        decompress(BufReader::with_capacity(1 << 16, reader)).map_err(stream_err)?;
    let mut hashing = HashingReader::new(inner);
    io::copy(&mut hashing, &mut io::sink()).map_err(stream_err)?;
    Ok((hashing.into_parts().1.finish(), compression))
}

/// A reader that reports how many bytes went through it (at most every 256 KiB, and at EOF).
struct ProgressReader<'a, R> {
    inner: R,
    total: u64,
    reported: u64,
    progress: &'a mut dyn FnMut(u64),
}

impl<R: Read> Read for ProgressReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.total += n as u64;
        if self.total - self.reported >= 256 * 1024 || (n == 0 && self.total != self.reported) {
            self.reported = self.total;
            (self.progress)(self.total);
        }
        Ok(n)
    }
}

/// Unpacks the layer stream `reader` into the existing, empty directory `dest`. `layer` names
/// the layer in error messages; `progress` receives the number of (compressed) bytes read.
pub fn unpack_layer(
    reader: &mut dyn Read,
    dest: &Path,
    layer: &str,
    progress: &mut dyn FnMut(u64),
) -> Result<UnpackedLayer> {
    let stream_err = |source| ImageError::LayerStream {
        layer: layer.to_string(),
        source,
    };
    let counted = ProgressReader {
        inner: reader,
        total: 0,
        reported: 0,
        progress,
    };
    let (compression, inner) =
        decompress(BufReader::with_capacity(1 << 18, counted)).map_err(stream_err)?;
    let mut hashing = HashingReader::new(inner);
    let root = rustix::fs::open(
        dest,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| {
        ImageError::io(
            format!("cannot open layer directory {}", dest.display()),
            e.into(),
        )
    })?;
    let mut unpacker = Unpacker {
        root,
        layer,
        chown: rustix::process::geteuid().is_root(),
        mode: UnpackMode::Layer,
        dir_times: Vec::new(),
        size: 0,
        buf: vec![0; 256 * 1024],
    };
    {
        let mut archive = tar::Archive::new(&mut hashing);
        for entry in archive.entries().map_err(stream_err)? {
            let mut entry = entry.map_err(stream_err)?;
            unpacker.entry(&mut entry)?;
        }
    }
    // The tar reader stops at the first zero block; the DiffID covers the whole stream.
    io::copy(&mut hashing, &mut io::sink()).map_err(stream_err)?;
    unpacker.finish_dir_times()?;
    Ok(UnpackedLayer {
        diff_id: hashing.into_parts().1.finish(),
        size: unpacker.size,
        compression,
    })
}

/// How [`extract_into_root`] treats a tar.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtractOptions {
    /// `Some((uid, gid))` gives every entry this owner (`docker cp` without `-a`: root);
    /// `None` keeps the tar's ids.
    pub owner: Option<(u64, u64)>,
    /// Refuse to replace a directory with a non-directory and vice versa.
    pub no_overwrite_dir_non_dir: bool,
    /// Into a remapped container: the entries' (container) ids become host ids.
    pub to_host: Option<crate::pack::IdShift>,
}

struct ExtractMode {
    prefix: Vec<OsString>,
    owner: Option<(u64, u64)>,
    no_overwrite_dir_non_dir: bool,
    to_host: Option<crate::pack::IdShift>,
}

enum UnpackMode {
    Layer,
    Extract(ExtractMode),
}

/// Extracts a plain (or compressed) tar into the directory `dest` of the root filesystem `root`
/// (`docker cp` into a container). Every path, `dest` included, is resolved as if `root` were
/// `/` (`openat2` with `RESOLVE_IN_ROOT`): a symlink to `/etc` inside the tree means
/// `root/etc`, and `..` stops at `root`. Entry names climbing above `dest` are refused.
/// Whiteout names are ordinary files here; the destination directory's own metadata is kept.
pub fn extract_into_root(
    reader: &mut dyn Read,
    root: &Path,
    dest: &str,
    opts: &ExtractOptions,
) -> Result<()> {
    let stream_err =
        |source| ImageError::InvalidArgument(format!("cannot extract archive: {source}"));
    let (_, inner) = decompress(BufReader::with_capacity(1 << 16, reader)).map_err(stream_err)?;
    let root_fd = rustix::fs::open(
        root,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| ImageError::io(format!("cannot open {}", root.display()), e.into()))?;
    let prefix = clean_path(dest.trim_start_matches('/').as_bytes()).unwrap_or_default();
    let label = format!("archive for {dest}");
    let mut unpacker = Unpacker {
        root: root_fd,
        layer: &label,
        chown: rustix::process::geteuid().is_root(),
        mode: UnpackMode::Extract(ExtractMode {
            prefix,
            owner: opts.owner,
            no_overwrite_dir_non_dir: opts.no_overwrite_dir_non_dir,
            to_host: opts.to_host,
        }),
        dir_times: Vec::new(),
        size: 0,
        buf: vec![0; 128 * 1024],
    };
    let result = (|| -> Result<()> {
        let mut archive = tar::Archive::new(inner);
        for entry in archive.entries().map_err(stream_err)? {
            let mut entry = entry.map_err(stream_err)?;
            unpacker.entry(&mut entry)?;
        }
        unpacker.finish_dir_times()
    })();
    result.map_err(|e| match e {
        ImageError::LayerEscape { entry, .. } => ImageError::InvalidArgument(format!(
            "cannot extract archive into {dest}: entry {entry:?} escapes the destination"
        )),
        ImageError::Unpack { entry, source, .. } => ImageError::Io {
            context: format!("cannot extract archive into {dest}: entry {entry:?}"),
            source,
        },
        other => other,
    })
}

/// Splits an entry path into clean components. `None` when the path is absolute or `..`
/// climbs above the layer root.
fn clean_path(raw: &[u8]) -> Option<Vec<OsString>> {
    if raw.starts_with(b"/") {
        return None;
    }
    let mut out: Vec<OsString> = Vec::new();
    for comp in raw.split(|b| *b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => {
                out.pop()?;
            }
            c => out.push(OsString::from_vec(c.to_vec())),
        }
    }
    Some(out)
}

fn join(comps: &[OsString]) -> OsString {
    let mut out = OsString::new();
    for (i, c) in comps.iter().enumerate() {
        if i > 0 {
            out.push("/");
        }
        out.push(c);
    }
    out
}

const WHITEOUT_PREFIX: &[u8] = b".wh.";
const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";
const OVERLAY_OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// Why creating one entry failed, before the entry name is attached.
enum Fail {
    Escape,
    Truncated,
    Io(io::Error),
}

impl From<io::Error> for Fail {
    fn from(e: io::Error) -> Fail {
        Fail::Io(e)
    }
}

impl From<rustix::io::Errno> for Fail {
    fn from(e: rustix::io::Errno) -> Fail {
        Fail::Io(e.into())
    }
}

/// Header fields of the entry being created.
struct EntryCtx<'a> {
    mode: u32,
    uid: u64,
    gid: u64,
    times: Timestamps,
    xattrs: &'a [(OsString, Vec<u8>)],
    comps: &'a [OsString],
}

struct Unpacker<'a> {
    root: OwnedFd,
    layer: &'a str,
    /// Ownership can only be applied as root; rootless callers keep their own uid.
    chown: bool,
    /// Layer mode (whiteouts converted, `RESOLVE_BENEATH`) or extraction into a container
    /// (no whiteouts, `RESOLVE_IN_ROOT` below a destination).
    mode: UnpackMode,
    /// Directory mtimes are applied last, because creating children changes them.
    dir_times: Vec<(Vec<OsString>, Timestamps)>,
    size: u64,
    /// Copy buffer for file contents (larger than io::copy's 8 KiB, for throughput).
    buf: Vec<u8>,
}

impl Unpacker<'_> {
    fn escape(&self, entry: &str) -> ImageError {
        ImageError::LayerEscape {
            layer: self.layer.to_string(),
            entry: entry.to_string(),
        }
    }

    fn failed(&self, entry: &str, source: io::Error) -> ImageError {
        // The kernel says EXDEV when RESOLVE_BENEATH stops a resolution leaving the root, and
        // ELOOP for magic links; both mean the entry tried to escape.
        match source.raw_os_error() {
            Some(code) if code == rustix::io::Errno::XDEV.raw_os_error() => self.escape(entry),
            _ => ImageError::Unpack {
                layer: self.layer.to_string(),
                entry: entry.to_string(),
                source,
            },
        }
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<()> {
        let raw_path = entry.path_bytes().into_owned();
        let display = String::from_utf8_lossy(&raw_path).into_owned();
        let mut comps = clean_path(&raw_path).ok_or_else(|| self.escape(&display))?;
        let kind = entry.header().entry_type();
        if let UnpackMode::Extract(x) = &self.mode {
            if comps.is_empty() {
                // Docker leaves the destination directory itself alone.
                return Ok(());
            }
            comps.splice(0..0, x.prefix.iter().cloned());
        }
        let header = entry.header();
        let mode = header.mode().map_err(|e| self.failed(&display, e))? & 0o7777;
        let old = header.as_old();
        let mut uid = numeric(header.uid(), &old.uid).map_err(|e| self.failed(&display, e))?;
        let mut gid = numeric(header.gid(), &old.gid).map_err(|e| self.failed(&display, e))?;
        let mut mtime =
            numeric(header.mtime(), &old.mtime).map_err(|e| self.failed(&display, e))?;
        let pax = pax_info(entry, self.layer).map_err(|e| self.failed(&display, e))?;
        // PAX records carry values too large for the header (ids above 2^21, far-future times).
        uid = pax.uid.unwrap_or(uid);
        gid = pax.gid.unwrap_or(gid);
        mtime = pax.mtime.unwrap_or(mtime);
        if let UnpackMode::Extract(ExtractMode {
            owner: Some((u, g)),
            ..
        }) = &self.mode
        {
            (uid, gid) = (*u, *g);
        }
        if let UnpackMode::Extract(ExtractMode {
            to_host: Some(shift),
            ..
        }) = &self.mode
        {
            (uid, gid) = shift.to_host(uid, gid);
        }
        let times = timestamps(mtime);
        let xattrs = pax.xattrs;

        let Some((name, parent_comps)) = comps.split_last() else {
            // The layer root itself ("./"): only its metadata applies.
            if kind.is_dir() {
                self.apply_root_metadata(mode, uid, gid, &xattrs)
                    .map_err(|e| self.failed(&display, e))?;
                self.dir_times.push((Vec::new(), times));
            }
            return Ok(());
        };
        let parent = self
            .open_dir(parent_comps, true)
            .map_err(|e| self.failed(&display, e))?;
        let name_bytes = name.as_bytes();
        let whiteouts = matches!(self.mode, UnpackMode::Layer);

        self.check_overwrite(&parent, name, kind, &comps, &display)?;

        if whiteouts && name_bytes == OPAQUE_MARKER {
            rustix::fs::fsetxattr(&parent, OVERLAY_OPAQUE_XATTR, b"y", XattrFlags::empty())
                .map_err(|e| self.failed(&display, e.into()))?;
            return Ok(());
        }
        if let Some(hidden) = name_bytes.strip_prefix(WHITEOUT_PREFIX)
            && whiteouts
        {
            if hidden.starts_with(WHITEOUT_PREFIX) {
                // Other `.wh..wh.` names are aufs metadata with no overlay meaning.
                return Ok(());
            }
            return self
                .whiteout(&parent, OsStr::from_bytes(hidden), uid, gid)
                .map_err(|e| self.failed(&display, e));
        }

        let ctx = EntryCtx {
            mode,
            uid,
            gid,
            times,
            xattrs: &xattrs,
            comps: &comps,
        };
        match self.create(entry, kind, &parent, name, &ctx) {
            Ok(()) => Ok(()),
            Err(Fail::Escape) => Err(self.escape(&display)),
            Err(Fail::Truncated) => Err(self.failed(
                &display,
                io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "unexpected EOF: the layer is truncated",
                ),
            )),
            Err(Fail::Io(e)) => Err(self.failed(&display, e)),
        }
    }

    /// With `no_overwrite_dir_non_dir` (docker cp's `noOverwriteDirNonDir`), refuses to replace
    /// a directory by a non-directory or the reverse.
    fn check_overwrite(
        &self,
        parent: &OwnedFd,
        name: &OsStr,
        kind: tar::EntryType,
        comps: &[OsString],
        display: &str,
    ) -> Result<()> {
        if let UnpackMode::Extract(x) = &self.mode
            && x.no_overwrite_dir_non_dir
            && let Ok(st) = rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW)
        {
            let existing_dir = FileType::from_raw_mode(st.st_mode) == FileType::Directory;
            if existing_dir != kind.is_dir() {
                let shown = format!("/{}", String::from_utf8_lossy(join(comps).as_bytes()));
                return Err(ImageError::InvalidArgument(if existing_dir {
                    format!("cannot overwrite directory {shown:?} with non-directory {display:?}")
                } else {
                    format!("cannot overwrite non-directory {shown:?} with directory {display:?}")
                }));
            }
        }
        Ok(())
    }

    /// An OCI whiteout of `hidden` as overlayfs writes it: a 0:0 character device.
    fn whiteout(&self, parent: &OwnedFd, hidden: &OsStr, uid: u64, gid: u64) -> io::Result<()> {
        clear(parent, hidden, false)?;
        rustix::fs::mknodat(
            parent,
            hidden,
            FileType::CharacterDevice,
            Mode::empty(),
            rustix::fs::makedev(0, 0),
        )?;
        if self.chown {
            chown_at(parent, hidden, uid, gid)?;
        }
        Ok(())
    }

    /// Creates one entry of `kind` as `parent/name` (one method per kind below).
    fn create<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        kind: tar::EntryType,
        parent: &OwnedFd,
        name: &OsString,
        ctx: &EntryCtx<'_>,
    ) -> Result<(), Fail> {
        use tar::EntryType as T;
        let header = entry.header();
        match kind {
            T::Regular | T::Continuous | T::GNUSparse => self.create_file(entry, parent, name, ctx),
            T::Directory => self.create_dir(parent, name, ctx),
            T::Symlink => self.create_symlink(entry, parent, name, ctx),
            T::Link => self.create_hard_link(entry, parent, name),
            T::Char => self.create_node(header, FileType::CharacterDevice, parent, name, ctx),
            T::Block => self.create_node(header, FileType::BlockDevice, parent, name, ctx),
            T::Fifo => self.create_node(header, FileType::Fifo, parent, name, ctx),
            other => {
                let comps = ctx.comps;
                tracing::debug!(layer = self.layer, entry = ?comps, kind = ?other, "skipping tar entry of unsupported type");
                Ok(())
            }
        }
    }

    fn create_file<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        parent: &OwnedFd,
        name: &OsString,
        ctx: &EntryCtx<'_>,
    ) -> Result<(), Fail> {
        let declared = entry.header().size()?;
        self.size += declared;
        let in_place =
            matches!(self.mode, UnpackMode::Extract(_)) && is_file_mountpoint(parent, name);
        let fd = if in_place {
            // A file a container has mounted (its hosts, a bound file): removing it
            // would detach the mount, so what the container sees is rewritten.
            rustix::fs::openat(
                parent,
                name.as_os_str(),
                OFlags::WRONLY | OFlags::TRUNC | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )?
        } else {
            clear(parent, name, false)?;
            rustix::fs::openat(
                parent,
                name.as_os_str(),
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            )?
        };
        let mut file = File::from(fd);
        let written = copy_with(entry, &mut file, &mut self.buf)?;
        if written != declared {
            return Err(Fail::Truncated);
        }
        self.set_fd_metadata(&file, ctx)?;
        rustix::fs::futimens(&file, &ctx.times)?;
        Ok(())
    }

    fn create_dir(
        &mut self,
        parent: &OwnedFd,
        name: &OsString,
        ctx: &EntryCtx<'_>,
    ) -> Result<(), Fail> {
        let exists = clear(parent, name, true)?;
        if !exists {
            rustix::fs::mkdirat(parent, name.as_os_str(), Mode::from_raw_mode(0o700))?;
        }
        let dir = open_beneath(parent, name)?;
        self.set_fd_metadata(&dir, ctx)?;
        self.dir_times.push((ctx.comps.to_vec(), ctx.times.clone()));
        Ok(())
    }

    fn create_symlink<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        parent: &OwnedFd,
        name: &OsString,
        ctx: &EntryCtx<'_>,
    ) -> Result<(), Fail> {
        let target = entry
            .link_name_bytes()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "symlink without target"))?
            .into_owned();
        clear(parent, name, false)?;
        rustix::fs::symlinkat(OsStr::from_bytes(&target), parent, name.as_os_str())?;
        if self.chown {
            chown_at(parent, name, ctx.uid, ctx.gid)?;
        }
        set_xattrs_and_times_at(parent, name, ctx)?;
        Ok(())
    }

    fn create_hard_link<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        parent: &OwnedFd,
        name: &OsString,
    ) -> Result<(), Fail> {
        let target_raw = entry
            .link_name_bytes()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "hard link without target"))?
            .into_owned();
        let mut target = clean_path(&target_raw).ok_or(Fail::Escape)?;
        if let UnpackMode::Extract(x) = &self.mode {
            target.splice(0..0, x.prefix.iter().cloned());
        }
        let Some((target_name, target_parent)) = target.split_last() else {
            return Err(Fail::Escape);
        };
        let target_dir = self.open_dir(target_parent, false)?;
        clear(parent, name, false)?;
        // Without AT_SYMLINK_FOLLOW, linkat links a symlink itself, never its target.
        rustix::fs::linkat(
            &target_dir,
            target_name.as_os_str(),
            parent,
            name.as_os_str(),
            AtFlags::empty(),
        )?;
        Ok(())
    }

    /// A device node or FIFO of `file_type`, its numbers from `header`.
    fn create_node(
        &self,
        header: &tar::Header,
        file_type: FileType,
        parent: &OwnedFd,
        name: &OsStr,
        ctx: &EntryCtx<'_>,
    ) -> Result<(), Fail> {
        let major = header.device_major()?.unwrap_or(0);
        let minor = header.device_minor()?.unwrap_or(0);
        let mode = Mode::from_raw_mode(ctx.mode);
        clear(parent, name, false)?;
        rustix::fs::mknodat(
            parent,
            name,
            file_type,
            mode,
            rustix::fs::makedev(major, minor),
        )?;
        if self.chown {
            chown_at(parent, name, ctx.uid, ctx.gid)?;
        }
        // mknod applies the umask; set the exact mode (the node was just created by us,
        // so following a symlink here is impossible).
        rustix::fs::chmodat(parent, name, mode, AtFlags::empty())?;
        set_xattrs_and_times_at(parent, name, ctx)?;
        Ok(())
    }

    /// Owner (as root), mode and xattrs of an open file or directory.
    fn set_fd_metadata(&self, fd: &impl AsFd, ctx: &EntryCtx<'_>) -> io::Result<()> {
        if self.chown {
            rustix::fs::fchown(fd, Some(uid_of(ctx.uid)), Some(gid_of(ctx.gid)))?;
        }
        // After chown, which clears setuid/setgid bits.
        rustix::fs::fchmod(fd, Mode::from_raw_mode(ctx.mode))?;
        for (k, v) in ctx.xattrs {
            rustix::fs::fsetxattr(fd, k.as_os_str(), v, XattrFlags::empty())?;
        }
        Ok(())
    }

    /// Opens (creating when `create`, with mode 0755 like Docker) the directory `comps` below
    /// the root, never resolving outside it.
    fn open_dir(&self, comps: &[OsString], create: bool) -> io::Result<OwnedFd> {
        if comps.is_empty() {
            return self.root.try_clone();
        }
        let resolve = match self.mode {
            UnpackMode::Layer => ResolveFlags::BENEATH,
            UnpackMode::Extract(_) => ResolveFlags::IN_ROOT,
        };
        match open_resolved(&self.root, &join(comps), resolve) {
            Err(e) if create && e.kind() == io::ErrorKind::NotFound => {}
            other => return other,
        }
        let mut fd = self.root.try_clone()?;
        for i in 0..comps.len() {
            match open_resolved(&self.root, &join(&comps[..=i]), resolve) {
                Ok(next) => fd = next,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    rustix::fs::mkdirat(&fd, comps[i].as_os_str(), Mode::from_raw_mode(0o755))?;
                    fd = open_beneath(&fd, &comps[i])?;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(fd)
    }

    fn apply_root_metadata(
        &self,
        mode: u32,
        uid: u64,
        gid: u64,
        xattrs: &[(OsString, Vec<u8>)],
    ) -> io::Result<()> {
        if self.chown {
            rustix::fs::fchown(&self.root, Some(uid_of(uid)), Some(gid_of(gid)))?;
        }
        rustix::fs::fchmod(&self.root, Mode::from_raw_mode(mode))?;
        for (k, v) in xattrs {
            rustix::fs::fsetxattr(&self.root, k.as_os_str(), v, XattrFlags::empty())?;
        }
        Ok(())
    }

    fn finish_dir_times(&mut self) -> Result<()> {
        let entries = std::mem::take(&mut self.dir_times);
        for (comps, times) in entries.iter().rev() {
            let display = String::from_utf8_lossy(join(comps).as_bytes()).into_owned();
            // A later entry may have replaced the directory; that is not an error.
            match self.open_dir(comps, false) {
                Ok(fd) => {
                    rustix::fs::futimens(&fd, times).map_err(|e| self.failed(&display, e.into()))?
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                    ) => {}
                Err(e) => return Err(self.failed(&display, e)),
            }
        }
        Ok(())
    }
}

/// Copies `from` to `to` through `buf`; returns the bytes copied.
fn copy_with(from: &mut dyn Read, to: &mut File, buf: &mut [u8]) -> io::Result<u64> {
    use std::io::Write;
    let mut total = 0u64;
    loop {
        let n = match from.read(buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        to.write_all(&buf[..n])?;
        total += n as u64;
    }
}

/// Opens a directory below `dir` without leaving it and without following magic links.
fn open_beneath(dir: &impl AsFd, path: &OsStr) -> io::Result<OwnedFd> {
    open_resolved(dir, path, ResolveFlags::BENEATH)
}

/// Opens a directory below `dir` with `resolve` (`BENEATH` or `IN_ROOT`), never through magic
/// links.
fn open_resolved(dir: &impl AsFd, path: &OsStr, resolve: ResolveFlags) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat2(
        dir,
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
        resolve | ResolveFlags::NO_MAGICLINKS,
    )?)
}

/// Removes whatever is at `parent/name`, except a directory when `keep_dir`. Returns whether a
/// directory was kept.
fn clear(parent: &OwnedFd, name: &OsStr, keep_dir: bool) -> io::Result<bool> {
    let stat = match rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(s) => s,
        Err(rustix::io::Errno::NOENT) => return Ok(false),
        Err(e) => return Err(e.into()),
    };
    if FileType::from_raw_mode(stat.st_mode) == FileType::Directory {
        if keep_dir {
            return Ok(true);
        }
        // remove_dir_all never follows symlinks inside the tree; the /proc path only names the
        // parent we already hold.
        std::fs::remove_dir_all(proc_path(parent, name))?;
    } else {
        rustix::fs::unlinkat(parent, name, AtFlags::empty())?;
    }
    Ok(false)
}

/// Whether `parent/name` is a regular file mounted over its directory's filesystem (a bind
/// mount's target: its mount id differs from its parent's).
fn is_file_mountpoint(parent: &OwnedFd, name: &OsStr) -> bool {
    let mnt_id = |dir: &OwnedFd, name: &OsStr, flags: AtFlags| {
        rustix::fs::statx(dir, name, flags, StatxFlags::TYPE | StatxFlags::MNT_ID).ok()
    };
    let Some(file) = mnt_id(parent, name, AtFlags::SYMLINK_NOFOLLOW) else {
        return false;
    };
    let Some(dir) = mnt_id(parent, OsStr::new(""), AtFlags::EMPTY_PATH) else {
        return false;
    };
    FileType::from_raw_mode(u32::from(file.stx_mode)) == FileType::RegularFile
        && file.stx_mnt_id != dir.stx_mnt_id
}

/// Xattrs and times of `parent/name` without following it (a symlink or device node, which
/// cannot be opened for that).
fn set_xattrs_and_times_at(parent: &OwnedFd, name: &OsStr, ctx: &EntryCtx<'_>) -> io::Result<()> {
    for (k, v) in ctx.xattrs {
        rustix::fs::lsetxattr(
            proc_path(parent, name),
            k.as_os_str(),
            v,
            XattrFlags::empty(),
        )?;
    }
    rustix::fs::utimensat(parent, name, &ctx.times, AtFlags::SYMLINK_NOFOLLOW)?;
    Ok(())
}

/// `/proc/self/fd/<dirfd>/<name>`, for calls that have no *at variant (lsetxattr).
fn proc_path(dir: &OwnedFd, name: &OsStr) -> PathBuf {
    let mut p = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    p.push(name);
    p
}

fn chown_at(parent: &OwnedFd, name: &OsStr, uid: u64, gid: u64) -> io::Result<()> {
    Ok(rustix::fs::chownat(
        parent,
        name,
        Some(uid_of(uid)),
        Some(gid_of(gid)),
        AtFlags::SYMLINK_NOFOLLOW,
    )?)
}

/// A numeric header field; an empty field (all NUL or spaces) reads as 0, as Go's archive/tar
/// (which wrote most layers) treats it.
fn numeric(parsed: io::Result<u64>, raw: &[u8]) -> io::Result<u64> {
    match parsed {
        Err(_) if raw.iter().all(|b| *b == 0 || *b == b' ') => Ok(0),
        other => other,
    }
}

fn uid_of(id: u64) -> Uid {
    Uid::from_raw(id as u32)
}

fn gid_of(id: u64) -> Gid {
    Gid::from_raw(id as u32)
}

fn timestamps(mtime: u64) -> Timestamps {
    let t = Timespec {
        tv_sec: mtime as i64,
        tv_nsec: 0,
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

/// What an entry's PAX records say beyond its header.
#[derive(Default)]
struct PaxInfo {
    /// From `SCHILY.xattr.<name>` records.
    xattrs: Vec<(OsString, Vec<u8>)>,
    uid: Option<u64>,
    gid: Option<u64>,
    /// Whole seconds of the `mtime` record (which may carry a fraction).
    mtime: Option<u64>,
}

fn pax_info<R: Read>(entry: &mut tar::Entry<'_, R>, layer: &str) -> io::Result<PaxInfo> {
    let mut info = PaxInfo::default();
    let Some(exts) = entry.pax_extensions()? else {
        return Ok(info);
    };
    let number = |v: &[u8]| -> Option<u64> {
        let s = std::str::from_utf8(v).ok()?;
        s.split('.').next()?.parse().ok()
    };
    for ext in exts {
        let ext = ext?;
        match ext.key_bytes() {
            b"uid" => info.uid = number(ext.value_bytes()),
            b"gid" => info.gid = number(ext.value_bytes()),
            b"mtime" => info.mtime = number(ext.value_bytes()),
            key => {
                let Some(name) = key.strip_prefix(b"SCHILY.xattr.") else {
                    continue;
                };
                // Overlay's own attributes (redirect, metacopy, opaque, ...) steer the kernel's
                // lookups across layers; a layer must not be able to forge them. Opaque
                // directories come only from the `.wh..wh..opq` marker.
                if name.starts_with(b"trusted.overlay.") {
                    tracing::debug!(layer, xattr = %String::from_utf8_lossy(name), "ignoring overlay xattr from a layer");
                    continue;
                }
                info.xattrs.push((
                    OsString::from_vec(name.to_vec()),
                    ext.value_bytes().to_vec(),
                ));
            }
        }
    }
    Ok(info)
}

#[cfg(test)]
#[path = "unpack_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "unpack_extract_tests.rs"]
mod extract_tests;
