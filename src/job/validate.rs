//! Checks of caller input against BITS's rules. Pure: no filesystem access
//! (whether the destination directory exists and is writable is the shell's
//! check, made before the command reaches the core).

use crate::{
    command::{FileSpec, NotifyCommand},
    config::{
        MAX_DESCRIPTION_CHARS, MAX_FILE_NAME_BYTES, MAX_LOCAL_PATH_BYTES, MAX_NAME_CHARS,
        MAX_NOTIFY_CHARS, MAX_PARALLEL_FILES, MAX_REMOTE_CHARS,
    },
    error::CommandError,
};

pub(crate) fn name(name: &str) -> Result<(), CommandError> {
    max_chars("name", name, MAX_NAME_CHARS)
}

pub(crate) fn description(text: &str) -> Result<(), CommandError> {
    max_chars("description", text, MAX_DESCRIPTION_CHARS)
}

fn max_chars(field: &'static str, text: &str, max: usize) -> Result<(), CommandError> {
    // Cheap bound first: a string of at most `max` bytes has at most `max` chars.
    if text.len() > max && text.chars().count() > max {
        return Err(CommandError::StringTooLong { field, max });
    }
    Ok(())
}

pub(crate) fn parallel_files(n: u32) -> Result<(), CommandError> {
    if n == 0 || n > MAX_PARALLEL_FILES {
        return Err(CommandError::InvalidArgument(format!(
            "parallel files must be between 1 and {MAX_PARALLEL_FILES}, not {n}"
        )));
    }
    Ok(())
}

pub(crate) fn max_bytes_per_second(cap: Option<u64>) -> Result<(), CommandError> {
    if cap == Some(0) {
        return Err(CommandError::InvalidArgument(
            "a bandwidth cap must be at least 1 byte per second (none lifts it)".into(),
        ));
    }
    Ok(())
}

pub(crate) fn notify_command(cmd: &NotifyCommand) -> Result<(), CommandError> {
    if !cmd.program.starts_with('/') {
        return Err(CommandError::InvalidArgument(
            "the notify program must be an absolute path".into(),
        ));
    }
    if cmd.program.contains('\0') || cmd.args.iter().any(|a| a.contains('\0')) {
        return Err(CommandError::InvalidArgument(
            "the notify command contains a NUL byte".into(),
        ));
    }
    if cmd.program.len() > MAX_LOCAL_PATH_BYTES {
        return Err(CommandError::StringTooLong {
            field: "notify program",
            max: MAX_LOCAL_PATH_BYTES,
        });
    }
    let chars: usize = cmd.args.iter().map(|a| a.chars().count() + 1).sum();
    if chars > MAX_NOTIFY_CHARS {
        return Err(CommandError::StringTooLong {
            field: "notify arguments",
            max: MAX_NOTIFY_CHARS,
        });
    }
    Ok(())
}

pub(crate) fn file(spec: &FileSpec) -> Result<(), CommandError> {
    remote(&spec.remote)?;
    local(&spec.local)
}

fn remote(remote: &str) -> Result<(), CommandError> {
    let invalid = |reason: &str| CommandError::InvalidRemoteName {
        remote: remote.to_owned(),
        reason: reason.to_owned(),
    };
    max_chars("remote name", remote, MAX_REMOTE_CHARS)?;
    let url = url::Url::parse(remote).map_err(|err| invalid(&err.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("the scheme must be http or https"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("no host"));
    }
    Ok(())
}

fn local(local: &str) -> Result<(), CommandError> {
    let invalid = |reason: &str| CommandError::InvalidLocalName {
        local: local.to_owned(),
        reason: reason.to_owned(),
    };
    if !local.starts_with('/') {
        return Err(invalid("must be an absolute path"));
    }
    if local.len() > MAX_LOCAL_PATH_BYTES {
        return Err(invalid("longer than PATH_MAX"));
    }
    if local.contains('\0') {
        return Err(invalid("contains a NUL byte"));
    }
    if local.ends_with('/') {
        return Err(invalid("names a directory, not a file"));
    }
    for part in local.split('/').skip(1) {
        if part.is_empty() || part == "." || part == ".." {
            return Err(invalid("must be normalized (no empty, '.' or '..' parts)"));
        }
        if part.len() > MAX_FILE_NAME_BYTES {
            return Err(invalid("a path component is longer than NAME_MAX"));
        }
    }
    Ok(())
}

/// The checks `set` makes, without applying anything.
pub(crate) fn property(property: &crate::command::Property) -> Result<(), CommandError> {
    use crate::command::Property;
    match property {
        Property::DisplayName(text) => name(text),
        Property::Description(text) => description(text),
        Property::NotifyCommand(Some(cmd)) => notify_command(cmd),
        Property::ParallelFiles(n) => parallel_files(*n),
        Property::MaxBytesPerSecond(cap) => max_bytes_per_second(*cap),
        Property::Priority(_)
        | Property::MinRetryDelay(_)
        | Property::NoProgressTimeout(_)
        | Property::MaxDownloadTime(_)
        | Property::NotifyCommand(None) => Ok(()),
    }
}
