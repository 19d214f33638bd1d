//! `--user` and `--group`: names or numbers, looked up once in the user and group databases
//! (`getpwnam_r`, `getgrnam_r` and their by-id forms, so NSS sources count too). Switching to
//! the identity is `process.rs`'s.

use std::ffi::{CStr, CString};

use crate::error::Error;

/// Who the processes become once the listeners are bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `None`: `--group` alone; the user stays.
    pub uid: Option<u32>,
    pub gid: u32,
    /// The user's name, for its supplementary groups (`initgroups`); `None` for a bare uid
    /// with no entry, or `--group` alone: then `gid` is the only group.
    pub user_name: Option<CString>,
    /// How messages name it: `www-data:www-data`.
    pub described: String,
}

struct User {
    name: CString,
    uid: u32,
    gid: u32,
}

/// Resolve `--user` and `--group`; `None` when neither is given.
pub fn resolve(user: Option<&str>, group: Option<&str>) -> Result<Option<Identity>, Error> {
    if user.is_none() && group.is_none() {
        return Ok(None);
    }
    let found_user = match user {
        None => None,
        Some(text) => Some(find_user(text)?),
    };
    let gid = match group {
        Some(text) => find_group(text)?,
        None => match &found_user {
            Some((_, Some(entry))) => entry.gid,
            Some((uid, None)) => {
                return Err(Error::config(format!(
                    "'--user {uid}' has no entry in the user database, so it has no group of its own: give '--group' too"
                )))
            }
            None => unreachable!("one of them is given"),
        },
    };
    let (uid, user_name) = match found_user {
        None => (None, None),
        Some((uid, entry)) => (Some(uid), entry.map(|e| e.name)),
    };
    let described = match (user, group) {
        (Some(user), Some(group)) => format!("{user}:{group}"),
        (Some(user), None) => format!("{user}:{gid}"),
        (None, group) => format!("group {}", group.unwrap_or_default()),
    };
    Ok(Some(Identity {
        uid,
        gid,
        user_name,
        described,
    }))
}

/// A user by name, else by number (which need not have an entry).
fn find_user(text: &str) -> Result<(u32, Option<User>), Error> {
    if let Some(entry) = passwd_by_name(text)? {
        return Ok((entry.uid, Some(entry)));
    }
    match text.parse::<u32>() {
        Ok(uid) => Ok((uid, passwd_by_uid(uid)?)),
        Err(_) => Err(Error::config(format!(
            "invalid value '{text}' for '--user': no such user"
        ))),
    }
}

/// A group by name, else by number.
fn find_group(text: &str) -> Result<u32, Error> {
    let name = CString::new(text)
        .map_err(|_| Error::config(format!("invalid value '{text}' for '--group'")))?;
    let found = lookup(
        |grp, buf, out| {
            // SAFETY: every pointer is valid for the call; `buf` outlives the result's use.
            unsafe { libc::getgrnam_r(name.as_ptr(), grp, buf.as_mut_ptr(), buf.len(), out) }
        },
        |grp: &libc::group| grp.gr_gid,
    )
    .map_err(|e| Error::config(format!("cannot look up the group '{text}': {e}")))?;
    if let Some(gid) = found {
        return Ok(gid);
    }
    text.parse::<u32>().map_err(|_| {
        Error::config(format!(
            "invalid value '{text}' for '--group': no such group"
        ))
    })
}

fn passwd_by_name(text: &str) -> Result<Option<User>, Error> {
    let name = CString::new(text)
        .map_err(|_| Error::config(format!("invalid value '{text}' for '--user'")))?;
    lookup(
        |pwd, buf, out| {
            // SAFETY: as in find_group.
            unsafe { libc::getpwnam_r(name.as_ptr(), pwd, buf.as_mut_ptr(), buf.len(), out) }
        },
        user,
    )
    .map_err(|e| Error::config(format!("cannot look up the user '{text}': {e}")))
}

fn passwd_by_uid(uid: u32) -> Result<Option<User>, Error> {
    lookup(
        |pwd, buf, out| {
            // SAFETY: as in find_group.
            unsafe { libc::getpwuid_r(uid, pwd, buf.as_mut_ptr(), buf.len(), out) }
        },
        user,
    )
    .map_err(|e| Error::config(format!("cannot look up the user {uid}: {e}")))
}

fn user(pwd: &libc::passwd) -> User {
    User {
        // SAFETY: a found entry's name is a NUL-terminated string in `lookup`'s buffer, alive
        // while this runs; it is copied here.
        name: unsafe { CStr::from_ptr(pwd.pw_name) }.to_owned(),
        uid: pwd.pw_uid,
        gid: pwd.pw_gid,
    }
}

/// Call a `get*_r` function with a growing buffer: the entry made into `R` by `read` while
/// the buffer its strings point into is alive; `None` when there is none.
fn lookup<T, R>(
    mut call: impl FnMut(*mut T, &mut Vec<libc::c_char>, *mut *mut T) -> libc::c_int,
    read: impl FnOnce(&T) -> R,
) -> std::io::Result<Option<R>> {
    let mut buf: Vec<libc::c_char> = vec![0; 1024];
    loop {
        // SAFETY: the C struct of plain fields and pointers is valid zeroed.
        let mut entry: T = unsafe { std::mem::zeroed() };
        let mut out: *mut T = std::ptr::null_mut();
        match call(&raw mut entry, &mut buf, &raw mut out) {
            0 if out.is_null() => return Ok(None),
            0 => return Ok(Some(read(&entry))),
            libc::ERANGE if buf.len() < 1 << 20 => buf.resize(buf.len() * 4, 0),
            // "Not found" comes back as one of these from some NSS modules.
            libc::ENOENT | libc::ESRCH | libc::EBADF | libc::EPERM => return Ok(None),
            code => return Err(std::io::Error::from_raw_os_error(code)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers_resolve() {
        let root = resolve(Some("root"), None).unwrap().unwrap();
        assert_eq!((root.uid, root.gid), (Some(0), 0));
        assert_eq!(root.user_name.as_deref(), Some(c"root"));
        let by_number = resolve(Some("0"), Some("0")).unwrap().unwrap();
        assert_eq!((by_number.uid, by_number.gid), (Some(0), 0));
        let group_only = resolve(None, Some("0")).unwrap().unwrap();
        assert_eq!((group_only.uid, group_only.user_name), (None, None));
        assert_eq!(resolve(None, None).unwrap(), None);
    }

    #[test]
    fn unknown_names_and_bare_uids_are_refused() {
        let err = resolve(Some("no-such-user-xyz"), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no such user"), "{err}");
        let err = resolve(None, Some("no-such-group-xyz"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("no such group"), "{err}");
        // A uid nobody has: no group to take from its entry.
        let err = resolve(Some("3999999"), None).unwrap_err().to_string();
        assert!(err.contains("give '--group' too"), "{err}");
        let ok = resolve(Some("3999999"), Some("0")).unwrap().unwrap();
        assert_eq!((ok.uid, ok.gid, ok.user_name), (Some(3_999_999), 0, None));
    }
}
