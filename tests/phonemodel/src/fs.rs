//! The in-memory filesystem behind sync (`stat`, `list`, `read`, `write`) and the shell's file
//! commands. Paths are absolute and normalised; `/storage/emulated/0` and `/storage/self/primary`
//! are aliases of `/sdcard`, as on a phone.

use std::collections::BTreeMap;

use crate::FileStat;

/// Mode of a regular file / directory type bits.
pub(crate) const S_IFMT: u32 = 0o170_000;
pub(crate) const S_IFREG: u32 = 0o100_000;
pub(crate) const S_IFDIR: u32 = 0o040_000;

#[derive(Debug, Clone)]
enum Entry {
    File {
        data: Vec<u8>,
        mode: u32,
        mtime: u32,
    },
    Dir {
        mode: u32,
        mtime: u32,
    },
}

/// Why a filesystem operation failed; the `Display` text is what toybox prints after the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FsError {
    NotFound,
    IsADirectory,
    NotADirectory,
    Exists,
    ReadOnly,
    PermissionDenied,
    NoSpace,
    InvalidPath,
}

impl std::fmt::Display for FsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::NotFound => "No such file or directory",
            Self::IsADirectory => "Is a directory",
            Self::NotADirectory => "Not a directory",
            Self::Exists => "File exists",
            Self::ReadOnly => "Read-only file system",
            Self::PermissionDenied => "Permission denied",
            Self::NoSpace => "No space left on device",
            Self::InvalidPath => "Invalid argument",
        })
    }
}

/// Directories that exist on a freshly booted phone.
const INITIAL_DIRS: &[&str] = &[
    "/",
    "/data",
    "/data/local",
    "/data/local/tmp",
    "/dev",
    "/proc",
    "/sdcard",
    "/sdcard/Android",
    "/sdcard/DCIM",
    "/sdcard/DCIM/Camera",
    "/sdcard/Download",
    "/sdcard/Movies",
    "/sdcard/Music",
    "/sdcard/Pictures",
    "/storage",
    "/storage/emulated",
    "/system",
    "/system/bin",
    "/vendor",
];

#[derive(Debug, Clone)]
pub(crate) struct Fs {
    entries: BTreeMap<String, Entry>,
}

impl Default for Fs {
    fn default() -> Self {
        Self::new(0)
    }
}

/// Normalises a path: absolute, `.`/`..` resolved, no trailing slash, sdcard aliases folded.
/// Relative paths are taken from `/` (the shell's working directory).
pub(crate) fn normalize(path: &str) -> Option<String> {
    if path.is_empty() || path.contains('\0') {
        return None;
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    let mut joined = String::with_capacity(path.len() + 1);
    for p in &parts {
        joined.push('/');
        joined.push_str(p);
    }
    if joined.is_empty() {
        joined.push('/');
    }
    for alias in [
        "/storage/emulated/0",
        "/storage/self/primary",
        "/mnt/sdcard",
    ] {
        if joined == alias {
            return Some("/sdcard".into());
        }
        if let Some(rest) = joined.strip_prefix(alias)
            && rest.starts_with('/')
        {
            return Some(format!("/sdcard{rest}"));
        }
    }
    Some(joined)
}

fn parent_of(path: &str) -> Option<&str> {
    if path == "/" {
        return None;
    }
    match path.rfind('/') {
        Some(0) => Some("/"),
        Some(i) => Some(&path[..i]),
        None => None,
    }
}

fn stat_of(entry: &Entry) -> FileStat {
    match entry {
        Entry::File { data, mode, mtime } => FileStat {
            mode: *mode,
            size: data.len() as u64,
            mtime: *mtime,
        },
        Entry::Dir { mode, mtime } => FileStat {
            mode: *mode,
            size: 3488,
            mtime: *mtime,
        },
    }
}

impl Fs {
    pub(crate) fn new(mtime: u32) -> Self {
        let mut entries = BTreeMap::new();
        for d in INITIAL_DIRS {
            let mode = if d.starts_with("/sdcard") {
                S_IFDIR | 0o771
            } else {
                S_IFDIR | 0o755
            };
            entries.insert((*d).to_string(), Entry::Dir { mode, mtime });
        }
        Self { entries }
    }

    pub(crate) fn stat(&self, path: &str) -> Option<FileStat> {
        let p = normalize(path)?;
        self.entries.get(&p).map(stat_of)
    }

    pub(crate) fn is_dir(&self, path: &str) -> bool {
        self.stat(path).is_some_and(|s| s.mode & S_IFMT == S_IFDIR)
    }

    pub(crate) fn exists(&self, path: &str) -> bool {
        self.stat(path).is_some()
    }

    pub(crate) fn list(&self, path: &str) -> Option<Vec<(String, FileStat)>> {
        let p = normalize(path)?;
        if !matches!(self.entries.get(&p), Some(Entry::Dir { .. })) {
            return None;
        }
        let prefix = if p == "/" {
            "/".to_string()
        } else {
            format!("{p}/")
        };
        Some(
            self.entries
                .range(prefix.clone()..)
                .take_while(|(k, _)| k.starts_with(&prefix))
                .filter_map(|(k, e)| {
                    let rest = &k[prefix.len()..];
                    (!rest.is_empty() && !rest.contains('/'))
                        .then(|| (rest.to_string(), stat_of(e)))
                })
                .collect(),
        )
    }

    pub(crate) fn read(&self, path: &str) -> Result<&[u8], FsError> {
        let p = normalize(path).ok_or(FsError::InvalidPath)?;
        match self.entries.get(&p) {
            Some(Entry::File { data, .. }) => Ok(data),
            Some(Entry::Dir { .. }) => Err(FsError::IsADirectory),
            None => Err(FsError::NotFound),
        }
    }

    /// Bytes held by regular files under `/sdcard` and `/data` (what counts against free space).
    pub(crate) fn used_bytes(&self) -> u64 {
        self.entries
            .iter()
            .filter(|(k, _)| k.starts_with("/sdcard/") || k.starts_with("/data/"))
            .map(|(_, e)| match e {
                Entry::File { data, .. } => data.len() as u64,
                Entry::Dir { .. } => 0,
            })
            .sum()
    }

    /// The shell user may write below `/sdcard` and `/data/local/tmp` only: elsewhere under
    /// `/data` is "Permission denied", everywhere else the root is read-only.
    pub(crate) fn check_writable(p: &str) -> Result<(), FsError> {
        let under = |dir: &str| {
            p.len() > dir.len() && p.starts_with(dir) && p.as_bytes()[dir.len()] == b'/'
        };
        if under("/sdcard") || under("/data/local/tmp") {
            Ok(())
        } else if p == "/data" || under("/data") {
            Err(FsError::PermissionDenied)
        } else {
            Err(FsError::ReadOnly)
        }
    }

    /// Creates `path` and its missing parents (`mkdir -p`).
    pub(crate) fn mkdir_p(&mut self, path: &str, mtime: u32) -> Result<(), FsError> {
        let p = normalize(path).ok_or(FsError::InvalidPath)?;
        match self.entries.get(&p) {
            Some(Entry::Dir { .. }) => return Ok(()),
            Some(Entry::File { .. }) => return Err(FsError::Exists),
            None => {}
        }
        if let Some(parent) = parent_of(&p) {
            self.mkdir_p(parent, mtime)?;
        }
        Self::check_writable(&p)?;
        self.entries.insert(
            p,
            Entry::Dir {
                mode: S_IFDIR | 0o771,
                mtime,
            },
        );
        Ok(())
    }

    /// Creates one directory whose parent must exist (`mkdir` without `-p`).
    pub(crate) fn mkdir(&mut self, path: &str, mtime: u32) -> Result<(), FsError> {
        let p = normalize(path).ok_or(FsError::InvalidPath)?;
        if self.entries.contains_key(&p) {
            return Err(FsError::Exists);
        }
        let parent = parent_of(&p).ok_or(FsError::Exists)?;
        match self.entries.get(parent) {
            Some(Entry::Dir { .. }) => {}
            Some(Entry::File { .. }) => return Err(FsError::NotADirectory),
            None => return Err(FsError::NotFound),
        }
        Self::check_writable(&p)?;
        self.entries.insert(
            p,
            Entry::Dir {
                mode: S_IFDIR | 0o771,
                mtime,
            },
        );
        Ok(())
    }

    /// Writes a regular file, creating missing parent directories as adbd's sync does.
    /// `free` is the space left before this write; replacing a file frees its old size first.
    pub(crate) fn write(
        &mut self,
        path: &str,
        data: Vec<u8>,
        mode: u32,
        mtime: u32,
        free: u64,
    ) -> Result<(), FsError> {
        let p = normalize(path).ok_or(FsError::InvalidPath)?;
        let old_size = match self.entries.get(&p) {
            Some(Entry::Dir { .. }) => return Err(FsError::IsADirectory),
            Some(Entry::File { data, .. }) => data.len() as u64,
            None => 0,
        };
        Self::check_writable(&p)?;
        if data.len() as u64 > free.saturating_add(old_size) {
            return Err(FsError::NoSpace);
        }
        if let Some(parent) = parent_of(&p) {
            self.mkdir_p(parent, mtime).map_err(|e| match e {
                FsError::Exists => FsError::NotADirectory,
                other => other,
            })?;
        }
        let perm = mode & 0o7777;
        let mode = if mode & S_IFMT == 0 || mode & S_IFMT == S_IFREG {
            S_IFREG | perm
        } else {
            return Err(FsError::InvalidPath);
        };
        self.entries.insert(p, Entry::File { data, mode, mtime });
        Ok(())
    }

    /// Appends to a file (creating it), for `>>` redirections.
    pub(crate) fn append(
        &mut self,
        path: &str,
        data: &[u8],
        mtime: u32,
        free: u64,
    ) -> Result<(), FsError> {
        let mut current = match self.read(path) {
            Ok(d) => d.to_vec(),
            Err(FsError::NotFound) => Vec::new(),
            Err(e) => return Err(e),
        };
        let mode = self.stat(path).map_or(S_IFREG | 0o660, |s| s.mode);
        current.extend_from_slice(data);
        self.write(path, current, mode, mtime, free)
    }

    /// Removes a file, or a directory tree when `recursive`.
    pub(crate) fn remove(&mut self, path: &str, recursive: bool) -> Result<(), FsError> {
        let p = normalize(path).ok_or(FsError::InvalidPath)?;
        match self.entries.get(&p) {
            None => return Err(FsError::NotFound),
            Some(Entry::File { .. }) => {
                Self::check_writable(&p)?;
                self.entries.remove(&p);
                return Ok(());
            }
            Some(Entry::Dir { .. }) => {}
        }
        if !recursive {
            return Err(FsError::IsADirectory);
        }
        Self::check_writable(&p)?;
        let prefix = format!("{p}/");
        let doomed: Vec<String> = self
            .entries
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, _)| k.clone())
            .collect();
        for k in doomed {
            self.entries.remove(&k);
        }
        self.entries.remove(&p);
        Ok(())
    }

    /// Every regular file at or below `path` (a file path yields itself).
    pub(crate) fn files_under(&self, path: &str) -> Vec<String> {
        let Some(p) = normalize(path) else {
            return Vec::new();
        };
        match self.entries.get(&p) {
            Some(Entry::File { .. }) => vec![p],
            Some(Entry::Dir { .. }) => {
                let prefix = if p == "/" {
                    "/".to_string()
                } else {
                    format!("{p}/")
                };
                self.entries
                    .range(prefix.clone()..)
                    .take_while(|(k, _)| k.starts_with(&prefix))
                    .filter(|(_, e)| matches!(e, Entry::File { .. }))
                    .map(|(k, _)| k.clone())
                    .collect()
            }
            None => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_folds_aliases_and_dots() {
        assert_eq!(
            normalize("/storage/emulated/0/DCIM/../x").as_deref(),
            Some("/sdcard/x")
        );
        assert_eq!(
            normalize("//sdcard//a/./b/").as_deref(),
            Some("/sdcard/a/b")
        );
        assert_eq!(normalize("/..").as_deref(), Some("/"));
        assert_eq!(
            normalize("/storage/emulated/01").as_deref(),
            Some("/storage/emulated/01")
        );
        assert_eq!(normalize(""), None);
    }

    #[test]
    fn write_creates_parents_and_respects_space() {
        let mut fs = Fs::new(5);
        fs.write("/sdcard/a/b/c.txt", b"hi".to_vec(), 0o644, 9, 100)
            .unwrap();
        assert!(fs.is_dir("/sdcard/a/b"));
        assert_eq!(fs.stat("/sdcard/a/b/c.txt").unwrap().mode, 0o100644);
        assert_eq!(
            fs.write("/sdcard/big", vec![0; 11], 0o644, 9, 10),
            Err(FsError::NoSpace)
        );
        assert_eq!(
            fs.write("/system/x", vec![], 0o644, 9, 10),
            Err(FsError::ReadOnly)
        );
        assert_eq!(
            fs.write("/sdcard/a", vec![], 0o644, 9, 10),
            Err(FsError::IsADirectory)
        );
        assert_eq!(
            fs.write("/sdcard/a/b/c.txt/d", vec![], 0o644, 9, 10),
            Err(FsError::NotADirectory)
        );
        assert_eq!(fs.used_bytes(), 2);
    }

    #[test]
    fn remove_needs_recursive_for_dirs() {
        let mut fs = Fs::new(0);
        fs.write("/sdcard/d/f", b"x".to_vec(), 0o644, 1, 10)
            .unwrap();
        assert_eq!(fs.remove("/sdcard/d", false), Err(FsError::IsADirectory));
        fs.remove("/sdcard/d", true).unwrap();
        assert!(!fs.exists("/sdcard/d/f"));
        assert_eq!(fs.remove("/sdcard/d", true), Err(FsError::NotFound));
        assert_eq!(fs.remove("/system", true), Err(FsError::ReadOnly));
    }
}
