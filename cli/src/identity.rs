//! Principals → Unix identities, for a system daemon acting for its users:
//! the engine runs each job's file operations and notify command with the
//! identity of the user named here.

use std::{
    collections::HashMap,
    ffi::CString,
    io,
    sync::Mutex,
    time::{Duration, Instant},
};

use ferry_actors::{FsIdentity, Identities};
use nix::unistd::{Gid, Uid, User};

/// How long a looked-up identity is reused (group changes show after this).
const TTL: Duration = Duration::from_secs(60);

/// The group of uids without a passwd entry (the kernel's overflow gid):
/// such a caller gets no group rights.
const NO_GROUP: u32 = 65534;

/// Principal names are Unix user names (`uid:N` for a uid without one), or
/// token users mapped to a uid in the configuration.
#[derive(Debug, Default)]
pub struct SystemIdentities {
    token_uids: HashMap<String, u32>,
    cache: Mutex<HashMap<String, (Instant, FsIdentity)>>,
}

impl SystemIdentities {
    /// Token users with an explicit uid; every other name is looked up.
    pub fn new(token_uids: HashMap<String, u32>) -> Self {
        Self {
            token_uids,
            cache: Mutex::default(),
        }
    }

    fn look_up(&self, name: &str) -> io::Result<FsIdentity> {
        let uid = match (self.token_uids.get(name), name.strip_prefix("uid:")) {
            (Some(uid), _) => *uid,
            (None, Some(number)) => number.parse().map_err(|_| not_found(name))?,
            (None, None) => user_by_name(name)?
                .ok_or_else(|| not_found(name))?
                .uid
                .as_raw(),
        };
        let Some(user) = User::from_uid(Uid::from_raw(uid)).map_err(io::Error::from)? else {
            return Ok(FsIdentity {
                uid,
                gid: NO_GROUP,
                groups: Vec::new(),
            });
        };
        let gid = user.gid.as_raw();
        let groups = CString::new(user.name.clone())
            .ok()
            .and_then(|c| nix::unistd::getgrouplist(&c, Gid::from_raw(gid)).ok())
            .map(|groups| groups.into_iter().map(Gid::as_raw).collect())
            .unwrap_or_else(|| vec![gid]);
        Ok(FsIdentity { uid, gid, groups })
    }
}

impl Identities for SystemIdentities {
    fn identity(&self, user: &str) -> io::Result<FsIdentity> {
        if let Ok(cache) = self.cache.lock()
            && let Some((at, identity)) = cache.get(user)
            && at.elapsed() < TTL
        {
            return Ok(identity.clone());
        }
        let identity = self.look_up(user)?;
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(user.to_owned(), (Instant::now(), identity.clone()));
        }
        Ok(identity)
    }
}

fn not_found(name: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{name:?} is no user of this system"),
    )
}

/// The passwd entry named `name`.
pub fn user_by_name(name: &str) -> io::Result<Option<User>> {
    User::from_name(name).map_err(io::Error::from)
}

/// A uid's user name, or `uid:N` for a uid without one.
pub fn user_name(uid: u32) -> String {
    match User::from_uid(Uid::from_raw(uid)) {
        Ok(Some(user)) => user.name,
        _ => format!("uid:{uid}"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn names_uids_and_tokens_map_to_identities() {
        let ids = SystemIdentities::new(HashMap::from([("ci".to_owned(), 0)]));
        let root = ids.identity("root").unwrap();
        assert_eq!((root.uid, root.gid), (0, 0));
        assert!(root.groups.contains(&0));
        assert_eq!(ids.identity("ci").unwrap().uid, 0);
        let unnamed = ids.identity("uid:4000000").unwrap();
        assert_eq!((unnamed.uid, unnamed.gid), (4_000_000, NO_GROUP));
        assert!(unnamed.groups.is_empty());
        let err = ids.identity("no-such-user-here").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(ids.identity("uid:x").is_err());
    }
}
