//! The filesystem backend: a registry storage root on local disk (or any mounted filesystem).
//!
//! Every path is opened relative to a folder already opened, with symbolic links refused at every
//! component (`openat2` with `RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH`, or one `O_NOFOLLOW` component at a
//! time where the kernel lacks `openat2`). So nothing outside the storage root is ever read, and a
//! symbolic-link loop is an error for one item, never a hang.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::fs::{Dir, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use crate::layout::{REPOSITORIES_DIR, V2_DIR};

/// An opened storage root: the `repositories` folder, held open so that every later open is relative.
pub struct FsRoot {
    repositories: OwnedFd,
    /// `blobs/`, when there is one (a tree without it has tags that the registry cannot serve).
    blobs: Option<OwnedFd>,
}

impl FsRoot {
    /// Opens `<root>/docker/registry/v2/repositories`. The root path itself is the user's choice and may
    /// go through symbolic links; below it, none is followed.
    pub fn open(root: &Path) -> io::Result<FsRoot> {
        let repositories = root.join(V2_DIR).join(REPOSITORIES_DIR);
        let fd = rustix::fs::open(&repositories, dir_flags(), Mode::empty()).map_err(|errno| {
            io::Error::new(
                io::Error::from(errno).kind(),
                format!("cannot open {}: {}", repositories.display(), io::Error::from(errno)),
            )
        })?;
        let blobs = rustix::fs::open(root.join(V2_DIR).join("blobs"), dir_flags(), Mode::empty()).ok();
        Ok(FsRoot { repositories: fd, blobs })
    }

    pub fn repositories(&self) -> BorrowedFd<'_> {
        self.repositories.as_fd()
    }

    pub fn blobs(&self) -> Option<BorrowedFd<'_>> {
        self.blobs.as_ref().map(|fd| fd.as_fd())
    }
}

fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC
}

/// Set once the kernel has told us it has no usable `openat2` (older than 5.6, or filtered by seccomp).
static OPENAT2_UNAVAILABLE: AtomicBool = AtomicBool::new(false);

/// Opens `relative` (components joined by `/`, no `..`) below `dir`, refusing symbolic links anywhere
/// on the way. An empty path or `.` opens `dir` again.
fn open_beneath(dir: BorrowedFd<'_>, relative: &str, flags: OFlags) -> io::Result<OwnedFd> {
    let relative = if relative.is_empty() { "." } else { relative };
    if !OPENAT2_UNAVAILABLE.load(Ordering::Relaxed) {
        let resolve = ResolveFlags::NO_SYMLINKS | ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS;
        match rustix::fs::openat2(dir, relative, flags, Mode::empty(), resolve) {
            Err(Errno::NOSYS) | Err(Errno::PERM) => OPENAT2_UNAVAILABLE.store(true, Ordering::Relaxed),
            other => return other.map_err(io::Error::from),
        }
    }
    open_beneath_by_components(dir, relative, flags)
}

/// The portable fallback of `open_beneath`: one `openat(O_NOFOLLOW)` per component.
fn open_beneath_by_components(dir: BorrowedFd<'_>, relative: &str, flags: OFlags) -> io::Result<OwnedFd> {
    let components: Vec<&str> = relative.split('/').filter(|c| !c.is_empty() && *c != ".").collect();
    if components.contains(&"..") {
        return Err(io::Error::from(Errno::XDEV));
    }
    let Some((last, parents)) = components.split_last() else {
        return rustix::fs::openat(dir, ".", flags, Mode::empty()).map_err(io::Error::from);
    };
    let mut current: Option<OwnedFd> = None;
    for component in parents {
        let base = current.as_ref().map(|fd| fd.as_fd()).unwrap_or(dir);
        current = Some(openat_nofollow(base, component, dir_flags())?);
    }
    let base = current.as_ref().map(|fd| fd.as_fd()).unwrap_or(dir);
    openat_nofollow(base, last, flags)
}

/// `openat(O_NOFOLLOW)`, reporting a symbolic link as ELOOP whatever the flags (with `O_DIRECTORY`,
/// Linux answers ENOTDIR for a link).
fn openat_nofollow(dir: BorrowedFd<'_>, name: &str, flags: OFlags) -> io::Result<OwnedFd> {
    match rustix::fs::openat(dir, name, flags | OFlags::NOFOLLOW, Mode::empty()) {
        Err(Errno::NOTDIR) => {
            let stat = rustix::fs::statat(dir, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)?;
            let is_link = FileType::from_raw_mode(stat.st_mode) == FileType::Symlink;
            Err(io::Error::from(if is_link { Errno::LOOP } else { Errno::NOTDIR }))
        }
        other => other.map_err(io::Error::from),
    }
}

/// Opens the folder at `relative` below `dir`.
pub fn open_dir(dir: BorrowedFd<'_>, relative: &str) -> io::Result<OwnedFd> {
    open_beneath(dir, relative, dir_flags())
}

/// Opens the file at `relative` below `dir` for reading.
pub fn open_file(dir: BorrowedFd<'_>, relative: &str) -> io::Result<OwnedFd> {
    open_beneath(dir, relative, OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW)
}

/// The size of the regular file at `relative` below `dir` (no symbolic link followed); `None` when
/// there is none.
pub fn file_size(dir: BorrowedFd<'_>, relative: &str) -> io::Result<Option<u64>> {
    match open_file(dir, relative) {
        Ok(fd) => {
            let stat = rustix::fs::fstat(&fd)?;
            let is_file = rustix::fs::FileType::from_raw_mode(stat.st_mode) == rustix::fs::FileType::RegularFile;
            Ok(is_file.then_some(stat.st_size as u64))
        }
        Err(error) if is_not_found(&error) => Ok(None),
        Err(error) => Err(error),
    }
}

/// Reads a small file at `relative` below `dir`: at most `max_len + 1` bytes, so that a caller can tell
/// a file that is too long from one that fits without reading the whole of a huge file.
pub fn read_small_file(dir: BorrowedFd<'_>, relative: &str, max_len: usize) -> io::Result<Vec<u8>> {
    let fd = open_file(dir, relative)?;
    let mut content = vec![0u8; max_len + 1];
    let mut filled = 0;
    while filled < content.len() {
        match rustix::io::read(&fd, &mut content[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(Errno::INTR) => continue,
            Err(errno) => return Err(errno.into()),
        }
    }
    content.truncate(filled);
    Ok(content)
}

/// What kind of thing a folder entry is. Symbolic links are reported, never followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    Dir,
    File,
    Symlink,
    Other,
}

/// One entry of a folder, with its name as raw bytes (names need not be UTF-8 on disk).
#[derive(Debug)]
pub struct Entry {
    pub name: Vec<u8>,
    pub kind: EntryKind,
}

/// Streams the entries of an opened folder (without `.` and `..`), reading them in batches as the
/// iteration goes, so that a folder with a million entries costs no more memory than one with ten.
pub struct Entries {
    dir: Dir,
}

impl Entries {
    pub fn new(dir: OwnedFd) -> io::Result<Entries> {
        Ok(Entries { dir: Dir::new(dir)? })
    }

    /// The folder's own descriptor, for opening paths below it while iterating.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.dir.fd().expect("linux Dir always has an fd")
    }

    fn kind_of(&self, name: &CStr, file_type: FileType) -> EntryKind {
        let file_type = if file_type == FileType::Unknown {
            // Some filesystems do not fill d_type: ask, without following a link.
            match rustix::fs::statat(self.fd(), name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW) {
                Ok(stat) => FileType::from_raw_mode(stat.st_mode),
                Err(_) => FileType::Unknown,
            }
        } else {
            file_type
        };
        match file_type {
            FileType::Directory => EntryKind::Dir,
            FileType::RegularFile => EntryKind::File,
            FileType::Symlink => EntryKind::Symlink,
            _ => EntryKind::Other,
        }
    }
}

impl Iterator for Entries {
    type Item = io::Result<Entry>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let entry = match self.dir.next()? {
                Ok(entry) => entry,
                Err(errno) => return Some(Err(errno.into())),
            };
            let name = entry.file_name();
            if name == c"." || name == c".." {
                continue;
            }
            let kind = self.kind_of(name, entry.file_type());
            return Some(Ok(Entry { name: name.to_bytes().to_vec(), kind }));
        }
    }
}

/// Lists the folder at `relative` below `dir`.
pub fn list_dir(dir: BorrowedFd<'_>, relative: &str) -> io::Result<Entries> {
    Entries::new(open_dir(dir, relative)?)
}

/// True when an I/O error means "this path does not exist" (as opposed to "could not be read").
pub fn is_not_found(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::NotFound
}

/// True when an I/O error comes from refusing a symbolic link (ELOOP) or a path leaving the root (EXDEV).
pub fn is_refused_link(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(code) if code == Errno::LOOP.raw_os_error() || code == Errno::XDEV.raw_os_error())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn reads_below_and_refuses_symlinks_on_the_way() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path();
        std::fs::create_dir_all(base.join("a/b")).unwrap();
        std::fs::write(base.join("a/b/f"), b"hello").unwrap();
        std::fs::write(tmp.path().join("outside"), b"secret").unwrap();
        symlink(base.join("a"), base.join("via-link")).unwrap();
        symlink("../outside", base.join("a/escape")).unwrap();
        let root = rustix::fs::open(base, dir_flags(), Mode::empty()).unwrap();

        assert_eq!(read_small_file(root.as_fd(), "a/b/f", 16).unwrap(), b"hello");
        assert_eq!(read_small_file(root.as_fd(), "a/b/f", 2).unwrap(), b"hel");
        for path in ["via-link/b/f", "a/escape", "../outside", "a/../../outside"] {
            let error = read_small_file(root.as_fd(), path, 16).unwrap_err();
            assert!(is_refused_link(&error), "{path}: {error}");
        }
        for path in ["via-link/b/f", "a/escape"] {
            let error = open_beneath_by_components(root.as_fd(), path, OFlags::RDONLY).unwrap_err();
            assert!(is_refused_link(&error), "{path}: {error}");
        }
        assert!(is_not_found(&read_small_file(root.as_fd(), "a/missing", 16).unwrap_err()));
    }

    #[test]
    fn lists_entries_with_their_kinds() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("d")).unwrap();
        std::fs::write(tmp.path().join("f"), b"").unwrap();
        symlink("d", tmp.path().join("l")).unwrap();
        let root = rustix::fs::open(tmp.path(), dir_flags(), Mode::empty()).unwrap();
        let mut entries: Vec<(String, EntryKind)> = list_dir(root.as_fd(), "")
            .unwrap()
            .map(|e| e.unwrap())
            .map(|e| (String::from_utf8(e.name).unwrap(), e.kind))
            .collect();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            entries,
            vec![
                ("d".to_string(), EntryKind::Dir),
                ("f".to_string(), EntryKind::File),
                ("l".to_string(), EntryKind::Symlink)
            ]
        );
    }
}
