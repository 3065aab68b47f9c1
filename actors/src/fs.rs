//! Blocking filesystem work: temp files, publishing, deleting, sweeping.
//!
//! Everything here blocks, so callers run it with
//! `actix_rt::task::spawn_blocking`, never on an arbiter. Paths come from
//! ferry-core, which validated them (absolute, normalised). Every operation
//! takes an [`Access`]: whose rights it uses and how the directory is
//! reached (see `access.rs`). Files are then named relative to their
//! directory's handle by a single component (a new temp file with the
//! engine's own rights by its whole path, which resolves the same way),
//! never followed if a symlink, and opened non-blocking (a FIFO planted at
//! a temp name cannot hang a pool thread).

use std::{
    collections::HashSet,
    ffi::OsStr,
    fs::File,
    io,
    os::fd::{AsFd, OwnedFd},
    path::Path,
    time::{Duration, SystemTime},
};

use ferry_core::UtcTime;
use rustix::{
    fs::{AtFlags, FileType, Mode, OFlags},
    io::Errno,
};

use crate::access::{self, Access, at};

/// A path's directory and its last component.
fn split(path: &Path) -> io::Result<(&Path, &OsStr)> {
    match (path.parent(), path.file_name()) {
        (Some(dir), Some(name)) => Ok((dir, name)),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} names no file in a directory", path.display()),
        )),
    }
}

/// [`Access::open_dir`], with `None` for a directory that is gone (so is
/// anything in it).
fn open_dir_if_present(access: &Access, dir: &Path, read: bool) -> io::Result<Option<OwnedFd>> {
    match access.open_dir(dir, read) {
        Ok(fd) => Ok(Some(fd)),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err),
    }
}

/// Opens `name` in `dir` without following a symlink.
fn open_in(dir: impl AsFd, name: &OsStr, flags: OFlags, mode: Mode) -> rustix::io::Result<OwnedFd> {
    rustix::fs::openat(
        dir,
        name,
        flags | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        mode,
    )
}

/// The type of `name` in `dir` (not following a symlink), `None` if absent.
fn kind_in(dir: impl AsFd, name: &OsStr) -> io::Result<Option<(FileType, u64)>> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(stat) => Ok(Some((
            FileType::from_raw_mode(stat.st_mode),
            u64::try_from(stat.st_size).unwrap_or(0),
        ))),
        Err(Errno::NOENT) => Ok(None),
        Err(err) => Err(err.into()),
    }
}

fn not_a_file(path: &Path) -> io::Error {
    io::Error::other(format!("{} is not a regular file", path.display()))
}

/// The longest path opened whole (Linux's `PATH_MAX` counts the NUL).
const WHOLE_PATH_MAX: usize = 4095;

/// Opens the temp file for writing from `offset`: created with O_EXCL and
/// O_NOFOLLOW (mode 0666 less the umask) if absent, else opened with
/// O_NOFOLLOW, checked to be a regular file, and truncated to `offset` (never
/// trust bytes past the last checkpoint). Returns the file and the offset to
/// resume from, which is 0 when the file held fewer bytes than `offset`
/// (its data was lost: the transfer starts again).
pub(crate) fn open_temp(access: &Access, path: &Path, offset: u64) -> io::Result<(File, u64)> {
    let (dir, name) = split(path)?;
    let _as = access.enter()?;
    // With paths resolved as usual, the whole path in one open (a new temp
    // file per transfer: two system calls fewer than a handle of the
    // directory first, opened and closed), unless it is too long for one
    // (a local name near PATH_MAX, which the temp name's suffix passes).
    let dir_fd = if access.resolves_paths() && path.as_os_str().len() < WHOLE_PATH_MAX {
        None
    } else {
        Some(access.open_dir(dir, false)?)
    };
    let open = |flags: OFlags, mode: Mode| match &dir_fd {
        Some(dir_fd) => open_in(dir_fd, name, flags, mode),
        None => open_in(rustix::fs::CWD, path.as_os_str(), flags, mode),
    };
    let flags = OFlags::WRONLY;
    let file = match open(
        flags | OFlags::CREATE | OFlags::EXCL,
        Mode::from_raw_mode(0o666),
    ) {
        Ok(fd) => return Ok((File::from(fd), 0)),
        Err(Errno::EXIST) => open(flags, Mode::empty()).map_err(|err| at(path, err))?,
        Err(err) => return Err(at(path, err)),
    };
    let file = File::from(file);
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(not_a_file(path));
    }
    let resume = if meta.len() >= offset { offset } else { 0 };
    if meta.len() > resume {
        file.set_len(resume)?;
    }
    Ok((file, resume))
}

/// Cuts an existing temp file back to `len` bytes if it is longer (a missing
/// file is fine: the transfer starts over). Never follows a symlink.
pub(crate) fn truncate_temp(access: &Access, path: &Path, len: u64) -> io::Result<()> {
    let (dir, name) = split(path)?;
    let _as = access.enter()?;
    let Some(dir_fd) = open_dir_if_present(access, dir, false)? else {
        return Ok(());
    };
    let file = match open_in(&dir_fd, name, OFlags::WRONLY, Mode::empty()) {
        Ok(fd) => File::from(fd),
        Err(Errno::NOENT) => return Ok(()),
        Err(err) => return Err(at(path, err)),
    };
    let meta = file.metadata()?;
    if meta.is_file() && meta.len() > len {
        file.set_len(len)?;
        file.sync_all()?;
    }
    Ok(())
}

/// Writes `data` at `offset`, as the user (whose disk quota applies).
pub(crate) fn write_at(
    access: &Access,
    file: &File,
    data: &crate::chunks::Gathered,
    offset: u64,
) -> io::Result<()> {
    let _as = access.enter()?;
    data.write_all_at(file, offset)
}

/// Starts writing back `file`'s dirty pages from `from` on, and drops its
/// pages already written back from the cache (`posix_fadvise(DONTNEED)`;
/// pages being written are kept). Advice only: if it fails, a later
/// fdatasync still syncs.
pub(crate) fn start_writeback(file: &File, from: u64) {
    let _ = rustix::fs::fadvise(file, from, None, rustix::fs::Advice::DontNeed);
}

/// The modification time a published file gets: the server's
/// `Last-Modified` (whole milliseconds; before 1970 counts as 1970).
pub(crate) fn file_time(modified: UtcTime) -> SystemTime {
    let millis = u64::try_from(modified.unix_millis()).unwrap_or(0);
    SystemTime::UNIX_EPOCH + Duration::from_millis(millis)
}

/// A publish that worked: the file is at its final name and its temp name
/// is gone (rename moves it, so nothing is left behind).
#[derive(Debug)]
pub(crate) enum Published {
    Done,
}

/// Publishes a transferred temp file at `local`: refuse a final name that
/// is a directory or another non-file, give the file its modification time
/// if it does not have it yet (and fsync that), give it to `committer` if
/// that is another user than the owner (BITS makes whoever calls Complete
/// the owner of the files), and rename it over the final name (atomically
/// replacing a regular file). Every name is looked up and changed with the
/// rights of `access` (the job's owner: an admin who completes a job gains
/// no say over the owner's directories). The caller fsyncs the directory
/// afterwards ([`sync_dir`]).
///
/// The file's bytes are durable already (a file is transferred only once
/// they are), and so is its time when the syncer set it with them at the
/// end of the body ([`file_time`]): the common publish is a rename only.
///
/// Idempotent: if the temp file is gone and `local` holds a file of the
/// expected size, an earlier publish got there first.
pub(crate) fn publish(
    access: &Access,
    committer: &Access,
    temp: &Path,
    local: &Path,
    modified: Option<UtcTime>,
    size: Option<u64>,
) -> io::Result<Published> {
    let (dir, temp_name) = split(temp)?;
    let (local_dir, local_name) = split(local)?;
    if dir != local_dir {
        return Err(io::Error::other(format!(
            "{} is not in the directory of {}",
            temp.display(),
            local.display()
        )));
    }
    let owner = access.identity()?;
    let (dir_fd, file) = {
        let _as = access.enter()?;
        let dir_fd = access.open_dir(dir, false)?;
        match open_in(&dir_fd, temp_name, OFlags::RDONLY, Mode::empty()) {
            Ok(fd) => (dir_fd, File::from(fd)),
            Err(Errno::NOENT) => {
                let done = kind_in(&dir_fd, local_name)?.is_some_and(|(kind, len)| {
                    kind == FileType::RegularFile && size.is_none_or(|s| len == s)
                });
                return if done {
                    Ok(Published::Done)
                } else {
                    Err(at(temp, Errno::NOENT))
                };
            }
            Err(err) => return Err(at(temp, err)),
        }
    };
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(not_a_file(temp));
    }
    // What follows uses the engine's rights on the open file (fsync, times,
    // owner): only on the owner's own temp file, the one link the transfer
    // created, never on a hard link to another file planted at its name.
    if let Some(owner) = &owner {
        use std::os::unix::fs::MetadataExt as _;
        if meta.uid() != owner.uid || meta.nlink() != 1 {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "{} belongs to uid {} and has {} links: not the job owner's temp file, not published",
                    temp.display(),
                    meta.uid(),
                    meta.nlink()
                ),
            ));
        }
    }
    // The committer, if another user than the owner, gets the file once it
    // is published (before, a failed rename would leave a temp file its
    // owner can no longer delete).
    let give_to = match &owner {
        Some(owner) => committer.identity()?.filter(|to| to.uid != owner.uid),
        None => None,
    };
    // Set (and made durable) with the bytes, unless that failed, the
    // recorded time came from another response than the last body's (a
    // resume that found every byte there, one without Last-Modified), or
    // the body ended in an older version of ferry.
    if let Some(time) = modified.map(file_time)
        && meta.modified().ok() != Some(time)
    {
        file.set_modified(time)?;
        file.sync_all()?;
    }
    {
        let _as = access.enter()?;
        match kind_in(&dir_fd, local_name)? {
            Some((kind, _)) if kind != FileType::RegularFile => {
                return Err(io::Error::other(format!(
                    "{} exists and is not a regular file",
                    local.display()
                )));
            }
            _ => {}
        }
        rustix::fs::renameat(&dir_fd, temp_name, &dir_fd, local_name)
            .map_err(|err| at(local, err))?;
    }
    // Published: a failure from here on leaves the file the owner's.
    if let Some(to) = give_to {
        let (uid, gid) = access::ids(&to);
        let given = rustix::fs::fchown(&file, Some(uid), Some(gid))
            .map_err(io::Error::from)
            .and_then(|()| file.sync_all());
        if let Err(err) = given {
            tracing::warn!(message = "A published file stays its owner's.", path = %local.display(), error = %err);
        }
    }
    Ok(Published::Done)
}

/// fsyncs a directory, so renames and creations in it are durable.
/// An fsync changes nothing, so it runs with the engine's own rights (the
/// user may lack read permission on the directory); the directory is still
/// reached by the strict rules and must be the pinned one.
pub(crate) fn sync_dir(access: &Access, dir: &Path) -> io::Result<()> {
    let fd = access.open_dir(dir, true)?;
    rustix::fs::fsync(&fd).map_err(|err| at(dir, err))
}

/// Deletes a temp file; a file already gone counts as deleted.
pub(crate) fn delete(access: &Access, path: &Path) -> io::Result<()> {
    // Only a file that is there can fail to be deleted.
    if crate::failpoint::active("fs::delete") && path.symlink_metadata().is_ok() {
        return Err(io::Error::other(
            "injected delete failure (failpoint fs::delete)",
        ));
    }
    let (dir, name) = split(path)?;
    let _as = access.enter()?;
    let Some(dir_fd) = open_dir_if_present(access, dir, false)? else {
        return Ok(());
    };
    match rustix::fs::unlinkat(&dir_fd, name, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(err) => Err(at(path, err)),
    }
}

/// Deletes, in `dir`, this engine's temp files that `keep` does not name.
/// Touches nothing else. Returns the paths deleted.
pub(crate) fn sweep_dir(
    access: &Access,
    dir: &Path,
    engine: u64,
    keep: &HashSet<String>,
) -> io::Result<Vec<String>> {
    let mut deleted = Vec::new();
    let _as = access.enter()?;
    let Some(dir_fd) = open_dir_if_present(access, dir, true)? else {
        return Ok(deleted);
    };
    let entries = rustix::fs::Dir::read_from(&dir_fd).map_err(|err| at(dir, err))?;
    for entry in entries {
        let entry = entry.map_err(|err| at(dir, err))?;
        let Ok(name) = entry.file_name().to_str() else {
            continue;
        };
        if !ferry_core::is_temp_file_name(name, engine) {
            continue;
        }
        let path = dir.join(name);
        let path_str = path.to_string_lossy().into_owned();
        if keep.contains(&path_str) {
            continue;
        }
        let name = OsStr::new(name);
        if kind_in(&dir_fd, name)?.is_none_or(|(kind, _)| kind != FileType::RegularFile) {
            continue;
        }
        match rustix::fs::unlinkat(&dir_fd, name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => deleted.push(path_str),
            // Another user's file (a shared sticky directory): that user's
            // own sweep deletes it.
            Err(err) => {
                tracing::debug!(message = "Could not sweep a temp file.", path = %path.display(), error = %err);
            }
        }
    }
    Ok(deleted)
}

/// Why a local name cannot be added.
#[derive(Debug)]
pub(crate) enum LocalProblem {
    /// Not usable (no such directory, a directory itself, ...).
    Invalid(String),
    /// The user may not write there (permissions, a symlink on the way in
    /// strict mode, a replaced directory).
    Forbidden(String),
}

/// Checks, with the rights of `access`, that each of `locals` can be
/// published: its directory is reached (without symlinks when strict,
/// pinning it), the user may create files in it, and the name is not a
/// directory. A directory is opened and checked once for a run of locals
/// in it (a job's files mostly share one). The first problem, and whose.
pub(crate) fn check_locals<'a>(
    access: &Access,
    locals: impl IntoIterator<Item = &'a Path>,
) -> Result<(), (&'a Path, LocalProblem)> {
    let mut entered = None;
    let mut open: Option<(&Path, OwnedFd)> = None;
    for local in locals {
        if entered.is_none() {
            let guard = access
                .enter()
                .map_err(|err| (local, LocalProblem::Forbidden(err.to_string())))?;
            entered = Some(guard);
        }
        let (dir, name) = split(local).map_err(|err| (local, invalid(err.to_string())))?;
        let dir_fd = match open.take() {
            Some((known, fd)) if known == dir => (known, fd),
            _ => (
                dir,
                check_dir(access, dir).map_err(|problem| (local, problem))?,
            ),
        };
        check_name(&dir_fd.1, local, name).map_err(|problem| (local, problem))?;
        open = Some(dir_fd);
    }
    Ok(())
}

fn invalid(reason: String) -> LocalProblem {
    LocalProblem::Invalid(reason)
}

/// The directory `dir`, opened as `access` (entered), if files may be
/// created in it.
fn check_dir(access: &Access, dir: &Path) -> Result<OwnedFd, LocalProblem> {
    let dir_fd = access
        .open_dir(dir, false)
        .map_err(|err| match err.kind() {
            io::ErrorKind::NotFound | io::ErrorKind::NotADirectory => {
                invalid("its directory does not exist".into())
            }
            io::ErrorKind::PermissionDenied => LocalProblem::Forbidden(err.to_string()),
            _ => invalid(err.to_string()),
        })?;
    match rustix::fs::accessat(
        &dir_fd,
        ".",
        rustix::fs::Access::WRITE_OK | rustix::fs::Access::EXEC_OK,
        AtFlags::EACCESS,
    ) {
        Ok(()) | Err(Errno::NOSYS) => Ok(dir_fd),
        Err(Errno::ACCESS | Errno::PERM) => Err(LocalProblem::Forbidden(format!(
            "{}: may not create files there",
            dir.display()
        ))),
        Err(Errno::ROFS) => Err(invalid(format!("{}: read-only filesystem", dir.display()))),
        Err(err) => Err(invalid(at(dir, err).to_string())),
    }
}

/// Whether `name` in the directory may be published over: nothing there,
/// or a regular file.
fn check_name(dir_fd: &OwnedFd, local: &Path, name: &OsStr) -> Result<(), LocalProblem> {
    match kind_in(dir_fd, name) {
        Ok(Some((FileType::Directory, _))) => Err(invalid("is a directory".into())),
        // Publishing replaces only a regular file (never follows a link).
        Ok(Some((kind, _))) if kind != FileType::RegularFile => Err(invalid(
            "exists and is not a regular file (a symbolic link, a device, ...)".into(),
        )),
        Ok(_) => Ok(()),
        Err(err) => Err(invalid(at(local, err).to_string())),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use std::path::PathBuf;

    use super::*;

    /// A directory with a file, a subdirectory and a symbolic link.
    fn dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("file"), b"x").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::os::unix::fs::symlink("file", dir.path().join("link")).unwrap();
        dir
    }

    /// The first refused name of `names` in `dir`, after `before` new names.
    fn first_refused(dir: &Path, before: usize, names: &[&str]) -> Option<String> {
        let mut locals: Vec<PathBuf> = (0..before).map(|i| dir.join(format!("new{i}"))).collect();
        locals.extend(names.iter().map(|n| dir.join(n)));
        let result = check_locals(&Access::engine(), locals.iter().map(PathBuf::as_path));
        result
            .err()
            .map(|(local, _)| local.file_name().unwrap().to_string_lossy().into_owned())
    }

    #[test]
    fn a_destination_may_be_absent_or_a_file_never_a_directory_or_a_link() {
        let dir = dir();
        for before in [0, 20] {
            assert_eq!(first_refused(dir.path(), before, &["file", "absent"]), None);
            assert_eq!(
                first_refused(dir.path(), before, &["file", "sub"]).as_deref(),
                Some("sub"),
                "{before}"
            );
            assert_eq!(
                first_refused(dir.path(), before, &["absent", "link"]).as_deref(),
                Some("link"),
                "{before}"
            );
        }
    }
}
