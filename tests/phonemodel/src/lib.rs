//! The model of one simulated Android phone, with no I/O: its shell, an in-memory filesystem for
//! sync, and the app's screens. The ADB peer in `phonefarm-phonesim` calls into it for every shell
//! command and sync request; this crate fixes the interface between the two.

use std::collections::BTreeMap;

/// What one shell command produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShellOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit: u8,
}

/// File metadata as the sync protocol reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStat {
    /// Unix mode bits including the file type (0o100644 for a regular file, 0o040755 for a dir).
    pub mode: u32,
    pub size: u64,
    /// Seconds since the Unix epoch.
    pub mtime: u32,
}

/// Identity a phone shows in its CNXN banner and `getprop`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub serial: String,
    pub product: String,
    pub model: String,
    pub device: String,
    pub android_version: String,
}

impl Default for Identity {
    fn default() -> Self {
        Self {
            serial: "SIM0001".into(),
            product: "phonesim".into(),
            model: "Phonesim_One".into(),
            device: "phonesim".into(),
            android_version: "13".into(),
        }
    }
}

/// One simulated phone. The peer wraps it in `Arc<Mutex<Phone>>`; every method is quick and
/// never blocks.
#[derive(Debug, Default)]
pub struct Phone {
    identity: Identity,
    files: BTreeMap<String, (Vec<u8>, u32, u32)>,
}

impl Phone {
    pub fn new(identity: Identity) -> Self {
        Self { identity, files: BTreeMap::new() }
    }

    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// Runs one command line as `sh -c` would on the phone.
    pub fn shell(&mut self, cmd: &str) -> ShellOutput {
        ShellOutput {
            stdout: Vec::new(),
            stderr: format!("/system/bin/sh: {cmd}: inaccessible or not found\n").into_bytes(),
            exit: 127,
        }
    }

    pub fn stat(&self, path: &str) -> Option<FileStat> {
        self.files.get(path).map(|(data, mode, mtime)| FileStat {
            mode: *mode,
            size: data.len() as u64,
            mtime: *mtime,
        })
    }

    /// Entries of a directory (names only, not paths), or None if it is not a directory.
    pub fn list(&self, path: &str) -> Option<Vec<(String, FileStat)>> {
        let prefix = format!("{}/", path.trim_end_matches('/'));
        let entries: Vec<_> = self
            .files
            .iter()
            .filter_map(|(p, (d, m, t))| {
                let rest = p.strip_prefix(&prefix)?;
                (!rest.contains('/')).then(|| {
                    (rest.to_string(), FileStat { mode: *m, size: d.len() as u64, mtime: *t })
                })
            })
            .collect();
        Some(entries)
    }

    pub fn read(&self, path: &str) -> Option<Vec<u8>> {
        self.files.get(path).map(|(d, _, _)| d.clone())
    }

    /// Stores a pushed file. `mode` is the full mode from the sync SEND request.
    pub fn write(&mut self, path: &str, data: Vec<u8>, mode: u32, mtime: u32) -> Result<(), String> {
        self.files.insert(path.to_string(), (data, mode, mtime));
        Ok(())
    }

    /// The phone reboots (state resets as after a real reboot).
    pub fn reboot(&mut self) {}
}
