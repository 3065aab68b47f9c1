//! Whose rights a filesystem operation uses, and how it reaches its directory.
//!
//! By default (an embedded engine, a user-mode daemon) the engine works with
//! its own identity and resolves paths as usual. With
//! [`EngineConfig::identities`](crate::EngineConfig::identities) set (a
//! system daemon serving many users), every file operation of a job runs
//! with the filesystem identity of a user (the job's owner for transfers, the
//! caller of Complete or Cancel for the commit): the blocking-pool thread
//! takes that user's fsuid, fsgid and supplementary groups for the
//! operation (per thread: `setfsuid`, `setfsgid`, the raw `setgroups`
//! syscall) and gives them back afterwards. Directories are reached with
//! `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)`
//! and every file is named relative to that handle by one component, with
//! `O_NOFOLLOW`. The directory's identity (device, inode) is pinned when a
//! file is added (or at its first use after a restart); a directory that was
//! replaced since is refused. So the kernel's own permission checks decide,
//! and a user can never make the engine write where that user could not.

use std::{
    collections::HashMap,
    fmt, io,
    os::fd::{AsFd as _, OwnedFd},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use ferry_core::JobId;
use rustix::{
    fs::{Mode, OFlags, ResolveFlags},
    process::{Gid, Uid},
    thread::{CapabilitySet, CapabilitySets},
};

use crate::store::{Store, StoreBatch};

/// A Unix filesystem identity: the uid, gid and supplementary groups a file
/// operation is checked against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FsIdentity {
    /// The user id.
    pub uid: u32,
    /// The primary group id (new files get it, unless the directory is
    /// setgid).
    pub gid: u32,
    /// Supplementary groups.
    pub groups: Vec<u32>,
}

/// Maps a principal's user name to the identity its file operations run
/// with. Called on the blocking pool (it may read `/etc/passwd` or ask NSS).
pub trait Identities: fmt::Debug + Send + Sync + 'static {
    /// The identity of `user`, or an error (such as `NotFound`) when the
    /// user has none: then nothing is done on that user's behalf.
    fn identity(&self, user: &str) -> io::Result<FsIdentity>;
}

/// A directory's identity: device, inode and birth time (nanoseconds since
/// the epoch, 0 where the filesystem does not tell), so that a new
/// directory reusing a deleted one's inode number is told apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DirId {
    dev: u64,
    ino: u64,
    born: u64,
}

impl DirId {
    fn of(fd: &OwnedFd) -> io::Result<Self> {
        use rustix::fs::{AtFlags, StatxFlags};
        match rustix::fs::statx(
            fd,
            "",
            AtFlags::EMPTY_PATH,
            StatxFlags::INO | StatxFlags::BTIME,
        ) {
            Ok(stx) => {
                let born = if stx.stx_mask & StatxFlags::BTIME.bits() != 0 {
                    u64::try_from(stx.stx_btime.tv_sec)
                        .unwrap_or(0)
                        .saturating_mul(1_000_000_000)
                        .saturating_add(u64::from(stx.stx_btime.tv_nsec))
                } else {
                    0
                };
                Ok(Self {
                    dev: (u64::from(stx.stx_dev_major) << 32) | u64::from(stx.stx_dev_minor),
                    ino: stx.stx_ino,
                    born,
                })
            }
            Err(_) => {
                let stat = rustix::fs::fstat(fd)?;
                Ok(Self {
                    dev: (u64::from(rustix::fs::major(stat.st_dev)) << 32)
                        | u64::from(rustix::fs::minor(stat.st_dev)),
                    ino: stat.st_ino,
                    born: 0,
                })
            }
        }
    }

    fn same(&self, other: &Self) -> bool {
        self.dev == other.dev
            && self.ino == other.ino
            && (self.born == 0 || other.born == 0 || self.born == other.born)
    }

    /// The stored form (24 bytes).
    pub(crate) fn to_bytes(self) -> Vec<u8> {
        [self.dev, self.ino, self.born]
            .iter()
            .flat_map(|n| n.to_be_bytes())
            .collect()
    }

    /// Reads [`DirId::to_bytes`]'s form.
    pub(crate) fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let number = |range: std::ops::Range<usize>| {
            bytes
                .get(range)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(u64::from_be_bytes)
        };
        if bytes.len() != 24 {
            return None;
        }
        Some(Self {
            dev: number(0..8)?,
            ino: number(8..16)?,
            born: number(16..24)?,
        })
    }
}

/// Directories pinned by one job: path → identity of the directory that
/// was there when a file was added in it (or, for a job added to by an
/// older build, when it was first used). New pins are recorded in the store
/// with the job, so they hold across restarts.
#[derive(Debug, Default)]
pub(crate) struct Pins {
    map: Mutex<HashMap<PathBuf, DirId>>,
    record: Option<(Store, JobId)>,
}

impl Pins {
    /// The pins of `job`, recorded in `store` as they are made.
    pub(crate) fn recorded(store: Store, job: JobId, known: Vec<(PathBuf, DirId)>) -> Self {
        Self {
            map: Mutex::new(known.into_iter().collect()),
            record: Some((store, job)),
        }
    }

    /// The pins made so far.
    pub(crate) fn entries(&self) -> Vec<(PathBuf, DirId)> {
        self.map
            .lock()
            .map(|pins| pins.iter().map(|(dir, id)| (dir.clone(), *id)).collect())
            .unwrap_or_default()
    }

    /// Takes the pins another (unrecorded) set made as its own, recording
    /// each: a new job's directories, checked before the job existed.
    /// One refused (a different directory pinned at its path meanwhile)
    /// does not stop the others; the first refusal is the answer.
    pub(crate) fn adopt(&self, entries: Vec<(PathBuf, DirId)>) -> io::Result<()> {
        let mut first = Ok(());
        for (dir, id) in entries {
            if let Err(err) = self.check(&dir, id)
                && first.is_ok()
            {
                first = Err(err);
            }
        }
        first
    }

    /// The first of `entries` that a pin of these refuses (a different
    /// directory at a pinned path), as the error a check would give.
    pub(crate) fn conflict(&self, entries: &[(PathBuf, DirId)]) -> Option<io::Error> {
        let Ok(pins) = self.map.lock() else {
            return Some(io::Error::other("directory pins poisoned"));
        };
        entries.iter().find_map(|(dir, id)| {
            pins.get(dir)
                .filter(|pinned| !pinned.same(id))
                .map(|_| replaced(dir))
        })
    }

    /// Pins `dir` to `id` if it is not pinned yet; refuses a different
    /// directory at a pinned path.
    fn check(&self, dir: &Path, id: DirId) -> io::Result<()> {
        let mut pins = self
            .map
            .lock()
            .map_err(|_| io::Error::other("directory pins poisoned"))?;
        match pins.get(dir) {
            Some(pinned) if !pinned.same(&id) => Err(replaced(dir)),
            Some(_) => Ok(()),
            None => {
                pins.insert(dir.to_owned(), id);
                if let Some((store, job)) = &self.record
                    && let Err(err) = store.write_lazy(StoreBatch::pin_dir(*job, dir, id))
                {
                    tracing::warn!(message = "Could not record a directory pin.", dir = %dir.display(), error = %err);
                }
                Ok(())
            }
        }
    }
}

fn replaced(dir: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!(
            "{} is not the directory it was when the file was added (it was replaced)",
            dir.display()
        ),
    )
}

/// The rights and path rules of one filesystem operation.
#[derive(Clone, Debug)]
pub(crate) struct Access {
    caller: Option<Arc<Caller>>,
}

#[derive(Debug)]
struct Caller {
    user: String,
    identities: Arc<dyn Identities>,
    pins: Arc<Pins>,
}

impl Access {
    /// The engine's own identity, paths resolved as usual.
    pub(crate) fn engine() -> Self {
        Self { caller: None }
    }

    /// Operations on behalf of `user` under the engine's settings: the
    /// user's identity when the engine maps identities, else the engine's.
    pub(crate) fn of(
        identities: Option<&Arc<dyn Identities>>,
        user: &str,
        pins: &Arc<Pins>,
    ) -> Self {
        Self {
            caller: identities.map(|identities| {
                Arc::new(Caller {
                    user: user.to_owned(),
                    identities: identities.clone(),
                    pins: pins.clone(),
                })
            }),
        }
    }

    /// The same rights for a check that must leave no pin behind if what
    /// it checks is refused later: directories are checked against a copy
    /// of the pins that records nothing, returned to adopt what it added
    /// once accepted (`None` without identities: nothing is pinned).
    pub(crate) fn checking(&self) -> (Self, Option<Arc<Pins>>) {
        let Some(caller) = &self.caller else {
            return (self.clone(), None);
        };
        let pins = Arc::new(Pins {
            map: Mutex::new(caller.pins.entries().into_iter().collect()),
            record: None,
        });
        let access = Self {
            caller: Some(Arc::new(Caller {
                user: caller.user.clone(),
                identities: caller.identities.clone(),
                pins: pins.clone(),
            })),
        };
        (access, Some(pins))
    }

    /// The identity operations run with (`None`: the engine's own).
    pub(crate) fn identity(&self) -> io::Result<Option<FsIdentity>> {
        match &self.caller {
            None => Ok(None),
            Some(caller) => caller
                .identities
                .identity(&caller.user)
                .map(Some)
                .map_err(|err| {
                    io::Error::new(
                        err.kind(),
                        format!("no identity for user {:?}: {err}", caller.user),
                    )
                }),
        }
    }

    /// Takes the caller's identity on this thread until the guard drops.
    /// Only on the blocking pool, never across an await.
    pub(crate) fn enter(&self) -> io::Result<Option<Become>> {
        match self.identity()? {
            None => Ok(None),
            Some(identity) => Become::new(&identity),
        }
    }

    /// Whether paths are resolved as usual ([`Access::engine`]): a file
    /// may then be opened by its whole path, with no handle of its
    /// directory first (what [`Access::open_dir`] would check is nothing).
    pub(crate) fn resolves_paths(&self) -> bool {
        self.caller.is_none()
    }

    /// Opens directory `dir` for lookups relative to it (`O_PATH`: no read
    /// permission needed), or for reading and fsync when `read`, with the
    /// current thread's identity (inside [`Access::enter`] to act as the
    /// user). Strict: no symlink on the way, the pinned directory or none.
    pub(crate) fn open_dir(&self, dir: &Path, read: bool) -> io::Result<OwnedFd> {
        let mode = if read { OFlags::RDONLY } else { OFlags::PATH };
        let flags = mode | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let Some(caller) = &self.caller else {
            return rustix::fs::open(dir, flags, Mode::empty()).map_err(|err| at(dir, err));
        };
        let relative = dir.strip_prefix("/").map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not an absolute path", dir.display()),
            )
        })?;
        let root = rustix::fs::open(
            "/",
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|err| at(Path::new("/"), err))?;
        let target = if relative.as_os_str().is_empty() {
            Path::new(".")
        } else {
            relative
        };
        let fd = rustix::fs::openat2(
            root.as_fd(),
            target,
            flags,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
        )
        .map_err(|err| match err {
            rustix::io::Errno::LOOP => io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "{}: the path holds a symbolic link (refused: give the real path)",
                    dir.display()
                ),
            ),
            rustix::io::Errno::NOSYS => io::Error::new(
                io::ErrorKind::Unsupported,
                "this kernel has no openat2 (Linux 5.6 or later is needed to act for other users)",
            ),
            err => at(dir, err),
        })?;
        caller
            .pins
            .check(dir, DirId::of(&fd).map_err(|err| at(dir, err))?)?;
        Ok(fd)
    }
}

/// An io error naming the path it is about.
pub(crate) fn at(path: &Path, err: impl Into<io::Error>) -> io::Error {
    let err = err.into();
    io::Error::new(err.kind(), format!("{}: {err}", path.display()))
}

/// The thread's filesystem identity switched to a user's; restored on drop.
///
/// Besides fsuid, fsgid and groups, the capabilities that would let the
/// thread override the user's limits leave its effective set: the ones the
/// kernel drops itself when the fsuid leaves 0 (a daemon that is not root
/// but holds them keeps them otherwise) and `CAP_SYS_RESOURCE`, which would
/// let writes pass the user's disk quota and the root-reserved blocks.
#[derive(Debug)]
pub(crate) struct Become {
    uid: u32,
    gid: u32,
    groups: Vec<Gid>,
    caps: Option<CapabilitySets>,
}

/// What a thread acting for a user must not hold.
const OVERRIDES: CapabilitySet = CapabilitySet::CHOWN
    .union(CapabilitySet::DAC_OVERRIDE)
    .union(CapabilitySet::DAC_READ_SEARCH)
    .union(CapabilitySet::FOWNER)
    .union(CapabilitySet::FSETID)
    .union(CapabilitySet::LINUX_IMMUTABLE)
    .union(CapabilitySet::MAC_OVERRIDE)
    .union(CapabilitySet::MKNOD)
    .union(CapabilitySet::SYS_RESOURCE);

fn set_fsuid(uid: u32) -> u32 {
    nix::unistd::setfsuid(nix::unistd::Uid::from_raw(uid)).as_raw()
}

fn set_fsgid(gid: u32) -> u32 {
    nix::unistd::setfsgid(nix::unistd::Gid::from_raw(gid)).as_raw()
}

fn denied(what: &str, id: u32) -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!(
            "the engine may not take {what} {id} (acting for other users needs root, or CAP_SETUID and CAP_SETGID)"
        ),
    )
}

impl Become {
    /// Switches this thread to `identity`; `None` if it already has it.
    fn new(identity: &FsIdentity) -> io::Result<Option<Self>> {
        let groups = rustix::process::getgroups()?;
        let mut wanted: Vec<u32> = identity.groups.clone();
        wanted.sort_unstable();
        wanted.dedup();
        let mut current: Vec<u32> = groups.iter().map(|g| g.as_raw()).collect();
        current.sort_unstable();
        current.dedup();
        // setfsuid(-1) changes nothing and answers the current value.
        let uid = set_fsuid(u32::MAX);
        let gid = set_fsgid(u32::MAX);
        if uid == identity.uid && gid == identity.gid && current == wanted {
            return Ok(None);
        }
        let caps = rustix::thread::capabilities(None)?;
        let mut restore = Self {
            uid,
            gid,
            groups,
            caps: None,
        };
        let wanted: Vec<Gid> = wanted.into_iter().map(Gid::from_raw).collect();
        rustix::thread::set_thread_groups(&wanted)
            .map_err(|_| denied("the groups of uid", identity.uid))?;
        set_fsgid(identity.gid);
        if set_fsgid(identity.gid) != identity.gid {
            return Err(denied("gid", identity.gid));
        }
        set_fsuid(identity.uid);
        if set_fsuid(identity.uid) != identity.uid {
            return Err(denied("uid", identity.uid));
        }
        // Read again: leaving fsuid 0 changed the effective set.
        let mut now = rustix::thread::capabilities(None)?;
        if now.effective.intersects(OVERRIDES) {
            now.effective.remove(OVERRIDES);
            rustix::thread::set_capabilities(None, now)?;
        }
        restore.caps = Some(caps);
        Ok(Some(restore))
    }
}

impl Drop for Become {
    fn drop(&mut self) {
        set_fsuid(self.uid);
        let uid_back = set_fsuid(self.uid) == self.uid;
        set_fsgid(self.gid);
        let gid_back = set_fsgid(self.gid) == self.gid;
        let groups_back = rustix::thread::set_thread_groups(&self.groups).is_ok();
        let caps_back = self
            .caps
            .is_none_or(|caps| rustix::thread::set_capabilities(None, caps).is_ok());
        if !(uid_back && gid_back && groups_back && caps_back) {
            // A pool thread left with a user's identity would do other
            // users' work with it: never go on.
            tracing::error!(
                message = "Could not restore the thread's identity; aborting.",
                uid = self.uid,
                gid = self.gid
            );
            std::process::abort();
        }
    }
}

/// The uid and gid of an identity as rustix values.
pub(crate) fn ids(identity: &FsIdentity) -> (Uid, Gid) {
    (Uid::from_raw(identity.uid), Gid::from_raw(identity.gid))
}

/// Tests' users: every name is `nobody` (65534).
#[cfg(test)]
#[derive(Debug)]
pub(crate) struct Nobody;

#[cfg(test)]
impl Identities for Nobody {
    fn identity(&self, _: &str) -> io::Result<FsIdentity> {
        Ok(FsIdentity {
            uid: 65534,
            gid: 65534,
            groups: vec![65534],
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn fs_ids() -> (u32, u32) {
        (set_fsuid(u32::MAX), set_fsgid(u32::MAX))
    }

    #[test]
    fn a_thread_acts_as_the_user_without_overrides_and_gets_its_identity_back() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipped: switching identities needs root");
            return;
        }
        std::thread::spawn(|| {
            let before = (
                fs_ids(),
                rustix::process::getgroups().unwrap(),
                rustix::thread::capabilities(None).unwrap(),
            );
            let identities: Arc<dyn Identities> = Arc::new(Nobody);
            let access = Access::of(Some(&identities), "nobody", &Arc::default());
            let closed = tempfile::TempDir::new().unwrap();
            std::fs::set_permissions(closed.path(), std::fs::Permissions::from_mode(0o700))
                .unwrap();
            std::fs::create_dir(closed.path().join("x")).unwrap();
            {
                let guard = access.enter().unwrap();
                assert!(guard.is_some());
                assert_eq!(fs_ids(), (65534, 65534));
                let groups = rustix::process::getgroups().unwrap();
                assert_eq!(groups, vec![Gid::from_raw(65534)]);
                let caps = rustix::thread::capabilities(None).unwrap();
                assert!(!caps.effective.intersects(OVERRIDES), "{caps:?}");
                // A directory closed to the user stays closed.
                let err = access
                    .open_dir(&closed.path().join("x"), false)
                    .unwrap_err();
                assert_eq!(err.kind(), io::ErrorKind::PermissionDenied, "{err}");
            }
            let after = (
                fs_ids(),
                rustix::process::getgroups().unwrap(),
                rustix::thread::capabilities(None).unwrap(),
            );
            assert_eq!(before, after);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_pinned_directory_must_stay_the_same() {
        let id = |dev, ino, born| DirId { dev, ino, born };
        let pins = Pins::default();
        pins.check(Path::new("/d"), id(1, 2, 7)).unwrap();
        pins.check(Path::new("/d"), id(1, 2, 7)).unwrap();
        // A filesystem that does not tell birth times: device and inode.
        pins.check(Path::new("/d"), id(1, 2, 0)).unwrap();
        for other in [id(1, 3, 7), id(2, 2, 7), id(1, 2, 8)] {
            let err = pins.check(Path::new("/d"), other).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
        }
        pins.check(Path::new("/e"), id(1, 3, 7)).unwrap();
        let bytes = id(u64::MAX, 3, 9).to_bytes();
        assert_eq!(DirId::from_bytes(&bytes), Some(id(u64::MAX, 3, 9)));
        assert_eq!(DirId::from_bytes(&bytes[..23]), None);
    }

    #[test]
    fn pins_checked_apart_are_compared_then_adopted_past_a_refusal() {
        let id = |dev, ino, born| DirId { dev, ino, born };
        let pins = Pins::default();
        pins.check(Path::new("/d"), id(1, 2, 7)).unwrap();
        // What a check against a copy holds: the job's pins and a new one.
        let checked = vec![
            (PathBuf::from("/d"), id(1, 2, 7)),
            (PathBuf::from("/e"), id(1, 3, 7)),
        ];
        assert!(pins.conflict(&checked).is_none());
        // Another check saw another directory at /e, and one at /f.
        let other = vec![
            (PathBuf::from("/e"), id(1, 4, 7)),
            (PathBuf::from("/f"), id(1, 5, 7)),
        ];
        assert!(pins.conflict(&other).is_none(), "/e is not pinned yet");
        pins.adopt(checked).unwrap();
        let err = pins.conflict(&other).expect("/e is pinned to another");
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
        // Adopting goes on past the refused one.
        assert!(pins.adopt(other).is_err());
        let mut dirs: Vec<PathBuf> = pins.entries().into_iter().map(|(d, _)| d).collect();
        dirs.sort();
        assert_eq!(dirs, ["/d", "/e", "/f"].map(PathBuf::from));
        assert!(
            pins.conflict(&[(PathBuf::from("/e"), id(1, 3, 7))])
                .is_none()
        );
    }
}
