//! Blocking filesystem work: temp files, publishing, deleting, sweeping.
//!
//! Everything here blocks, so callers run it with
//! `actix_rt::task::spawn_blocking`, never on an arbiter. Paths come from
//! ferry-core, which validated them (absolute, normalised).

use std::{
    fs::{self, File, OpenOptions},
    io,
    os::unix::fs::{FileExt as _, OpenOptionsExt as _},
    path::Path,
    time::{Duration, SystemTime},
};

use ferry_core::UtcTime;

/// Opens the temp file for writing from `offset`: created with O_EXCL and
/// O_NOFOLLOW (mode 0666 less the umask) if absent, else opened with
/// O_NOFOLLOW, checked to be a regular file, and truncated to `offset` (never
/// trust bytes past the last checkpoint). Returns the file and the offset to
/// resume from, which is 0 when the file held fewer bytes than `offset`
/// (its data was lost: the transfer starts again).
pub(crate) fn open_temp(path: &Path, offset: u64) -> io::Result<(File, u64)> {
    let created = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o666)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path);
    let file = match created {
        Ok(file) => return Ok((file, 0)),
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => OpenOptions::new()
            .write(true)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(path)?,
        Err(err) => return Err(err),
    };
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::other(format!(
            "{} is not a regular file",
            path.display()
        )));
    }
    let resume = if meta.len() >= offset { offset } else { 0 };
    file.set_len(resume)?;
    Ok((file, resume))
}

/// Cuts an existing temp file back to `len` bytes if it is longer (a missing
/// file is fine: the transfer starts over). Never follows a symlink.
pub(crate) fn truncate_temp(path: &Path, len: u64) -> io::Result<()> {
    let file = match OpenOptions::new()
        .write(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
    {
        Ok(file) => file,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(err),
    };
    let meta = file.metadata()?;
    if meta.is_file() && meta.len() > len {
        file.set_len(len)?;
        file.sync_all()?;
    }
    Ok(())
}

/// Writes `data` at `offset`.
pub(crate) fn write_at(file: &File, data: &[u8], offset: u64) -> io::Result<()> {
    file.write_all_at(data, offset)
}

/// A publish that worked: the file is at its final name and its temp name
/// is gone (rename moves it, so nothing is left behind).
#[derive(Debug)]
pub(crate) enum Published {
    Done,
}

/// Publishes a transferred temp file at `local`: fsync it (unless the caller
/// synced the whole filesystem already), refuse a final name that is a
/// directory or another non-file, set its modification time, and rename it
/// over the final name (atomically replacing a regular file). The caller
/// fsyncs the directory afterwards ([`sync_dir`]).
///
/// Idempotent: if the temp file is gone and `local` holds a file of the
/// expected size, an earlier publish got there first.
pub(crate) fn publish(
    temp: &Path,
    local: &Path,
    modified: Option<UtcTime>,
    size: Option<u64>,
    fsync: bool,
) -> io::Result<Published> {
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(temp)
    {
        Ok(file) => file,
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            let done = fs::symlink_metadata(local)
                .is_ok_and(|m| m.is_file() && size.is_none_or(|s| m.len() == s));
            return if done { Ok(Published::Done) } else { Err(err) };
        }
        Err(err) => return Err(err),
    };
    if fsync {
        file.sync_all()?;
    }
    match fs::symlink_metadata(local) {
        Ok(meta) if !meta.is_file() => {
            return Err(io::Error::other(format!(
                "{} exists and is not a regular file",
                local.display()
            )));
        }
        Ok(_) => {}
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) => return Err(err),
    }
    if let Some(modified) = modified {
        let millis = u64::try_from(modified.unix_millis()).unwrap_or(0);
        let time = SystemTime::UNIX_EPOCH + Duration::from_millis(millis);
        file.set_modified(time)?;
    }
    drop(file);
    fs::rename(temp, local)?;
    Ok(Published::Done)
}

/// fsyncs a directory, so renames and creations in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// fsyncs the whole filesystem holding `path` (one call instead of one fsync
/// per file when a job publishes many).
pub(crate) fn sync_filesystem(path: &Path) -> io::Result<()> {
    let dir = File::open(path)?;
    rustix::fs::syncfs(&dir).map_err(io::Error::from)
}

/// Deletes a temp file; a file already gone counts as deleted.
pub(crate) fn delete(path: &Path) -> io::Result<()> {
    if crate::failpoint::active("fs::delete") {
        return Err(io::Error::other(
            "injected delete failure (failpoint fs::delete)",
        ));
    }
    match fs::remove_file(path) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
        _ => Ok(()),
    }
}

/// Deletes, in `dir`, this engine's temp files that `keep` does not name.
/// Touches nothing else. Returns the paths deleted.
pub(crate) fn sweep_dir(
    dir: &Path,
    engine: u64,
    keep: &std::collections::HashSet<String>,
) -> io::Result<Vec<String>> {
    let mut deleted = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(deleted),
        Err(err) => return Err(err),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            continue;
        };
        if !ferry_core::is_temp_file_name(name, engine) {
            continue;
        }
        let path = entry.path();
        let path_str = path.to_string_lossy().into_owned();
        if keep.contains(&path_str) || !entry.file_type()?.is_file() {
            continue;
        }
        delete(&path)?;
        deleted.push(path_str);
    }
    Ok(deleted)
}
