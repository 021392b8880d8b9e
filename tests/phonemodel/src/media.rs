//! The media store: what the media scanner indexed (the gallery lists it), its durations, and
//! `content query` over it.

use crate::Phone;
use crate::ShellOutput;
use crate::actions::Action;
use crate::shell::{err, out};

/// What the gallery shows for a video whose file has no readable duration.
pub const DEFAULT_DURATION_MS: u32 = 15_000;

/// A scanned video.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MediaEntry {
    /// Scan order (the gallery shows the most recent first).
    pub seq: u64,
    /// Phone time from which the scan is visible.
    pub visible_at: u64,
    pub duration_ms: u32,
    /// The media store's row id.
    pub id: u64,
}

/// The duration an MP4/MOV file declares in its `moov/mvhd` box, in milliseconds.
pub fn mp4_duration_ms(data: &[u8]) -> Option<u32> {
    let moov = find_box(data, b"moov")?;
    let mvhd = find_box(moov, b"mvhd")?;
    let version = *mvhd.first()?;
    let be = |b: &[u8]| b.iter().fold(0u64, |acc, x| (acc << 8) | u64::from(*x));
    let (timescale, duration) = if version == 1 {
        (be(mvhd.get(20..24)?), be(mvhd.get(24..32)?))
    } else {
        (be(mvhd.get(12..16)?), be(mvhd.get(16..20)?))
    };
    if timescale == 0 {
        return None;
    }
    u32::try_from(duration.saturating_mul(1000) / timescale).ok()
}

/// The payload of the first box of `kind` among the boxes in `data`.
fn find_box<'a>(mut data: &'a [u8], kind: &[u8; 4]) -> Option<&'a [u8]> {
    while data.len() >= 8 {
        let size32 = u32::from_be_bytes(data[..4].try_into().ok()?);
        let (header, size) = match size32 {
            0 => (8, data.len()),
            1 => {
                let large = u64::from_be_bytes(data.get(8..16)?.try_into().ok()?);
                (16, usize::try_from(large).ok()?)
            }
            n => (8, n as usize),
        };
        if size < header || size > data.len() {
            return None;
        }
        if &data[4..8] == kind {
            return Some(&data[header..size]);
        }
        data = &data[size..];
    }
    None
}

/// `m:ss` as a gallery shows a duration.
pub(crate) fn duration_text(ms: u32) -> String {
    let s = ms / 1000;
    format!("{}:{:02}", s / 60, s % 60)
}

pub(crate) fn is_video_file(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    [".mp4", ".mov", ".3gp", ".webm", ".mkv"]
        .iter()
        .any(|e| lower.ends_with(e))
}

/// `/storage/emulated/0/x` as the media store writes paths.
fn external_path(path: &str) -> String {
    match path.strip_prefix("/sdcard/") {
        Some(rest) => format!("/storage/emulated/0/{rest}"),
        None => path.to_string(),
    }
}

impl Phone {
    /// Gallery items: scanned video files that still exist and whose scan is visible, most
    /// recently scanned first, with their durations.
    pub(crate) fn gallery_entries(&self) -> Vec<(String, MediaEntry)> {
        let now = self.faults.now_ms;
        let mut items: Vec<(String, MediaEntry)> = self
            .app
            .media
            .iter()
            .filter(|(p, e)| e.visible_at <= now && self.fs.read(p).is_ok() && is_video_file(p))
            .map(|(p, e)| (p.clone(), *e))
            .collect();
        items.sort_by(|a, b| b.1.seq.cmp(&a.1.seq).then_with(|| a.0.cmp(&b.0)));
        items
    }

    /// Gallery items (paths), most recently scanned first.
    pub fn gallery(&self) -> Vec<String> {
        self.gallery_entries().into_iter().map(|(p, _)| p).collect()
    }

    pub(crate) fn media_scan(&mut self, path: &str) {
        let visible_at = self.faults.now_ms + u64::from(self.config.behaviour.media_scan_ms);
        for file in self.fs.files_under(path) {
            if file.starts_with("/sdcard/") && is_video_file(&file) {
                let duration_ms = self
                    .fs
                    .read(&file)
                    .ok()
                    .and_then(mp4_duration_ms)
                    .unwrap_or(DEFAULT_DURATION_MS);
                self.app.media_seq += 1;
                let entry = MediaEntry {
                    seq: self.app.media_seq,
                    visible_at,
                    duration_ms,
                    id: 1000 + self.app.media_seq,
                };
                self.app.media.insert(file.clone(), entry);
                self.log(Action::MediaScanned { path: file });
            }
        }
    }

    /// `content query --uri content://media/external/video/media [--projection a:b]
    /// [--where "_data='PATH'"]`: the media store's videos (`_id`, `_data`, `duration`,
    /// `_display_name`).
    pub(crate) fn cmd_content(&mut self, args: &[&str]) -> ShellOutput {
        if args.first() != Some(&"query") {
            return err(
                "usage: adb shell content [subcommand] [options]\n  query --uri <URI> [--projection <PROJECTION>] [--where <WHERE>]\n",
                1,
            );
        }
        let mut uri = None;
        let mut projection: Option<Vec<String>> = None;
        let mut filter = None;
        let mut it = args[1..].iter();
        while let Some(a) = it.next() {
            match *a {
                "--uri" => uri = it.next().copied(),
                "--projection" => {
                    projection = it
                        .next()
                        .map(|p| p.split(':').map(str::to_string).collect())
                }
                "--where" => filter = it.next().copied(),
                "--user" | "--sort" => {
                    it.next();
                }
                _ => {}
            }
        }
        match uri {
            Some("content://media/external/video/media" | "content://media/external/file") => {}
            Some(other) => {
                return err(
                    format!(
                        "Error while accessing provider:{other}\njava.lang.IllegalArgumentException: Unknown URI {other}\n"
                    ),
                    1,
                );
            }
            None => return err("[ERROR] Argument expected after \"--uri\"\n", 1),
        }
        let wanted = match filter {
            None => None,
            Some(w) => {
                let Some(path) = w
                    .trim()
                    .strip_prefix("_data=")
                    .or_else(|| w.trim().strip_prefix("_data ="))
                    .map(|p| p.trim().trim_matches('\'').to_string())
                else {
                    return err(
                        format!(
                            "Error while accessing provider:media\nandroid.database.sqlite.SQLiteException: unsupported where clause {w:?}\n"
                        ),
                        1,
                    );
                };
                Some(path)
            }
        };
        let cols = projection.unwrap_or_else(|| {
            ["_id", "_data", "_display_name", "duration"]
                .map(str::to_string)
                .to_vec()
        });
        let mut rows = String::new();
        let mut n = 0;
        for (path, e) in self.gallery_entries().into_iter().rev() {
            let data = external_path(&path);
            if let Some(w) = &wanted
                && external_path(w) != data
            {
                continue;
            }
            let name = path.rsplit('/').next().unwrap_or(&path).to_string();
            let fields: Vec<String> = cols
                .iter()
                .map(|c| match c.as_str() {
                    "_id" => format!("_id={}", e.id),
                    "_data" => format!("_data={data}"),
                    "_display_name" => format!("_display_name={name}"),
                    "duration" => format!("duration={}", e.duration_ms),
                    other => format!("{other}=NULL"),
                })
                .collect();
            rows.push_str(&format!("Row: {n} {}\n", fields.join(", ")));
            n += 1;
        }
        if rows.is_empty() {
            out("No result found.\n")
        } else {
            out(rows)
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal MP4: `ftyp`, then `moov` holding a version-0 `mvhd`.
    pub(crate) fn mp4(duration_ms: u32) -> Vec<u8> {
        let mut mvhd = vec![0u8; 4 + 16];
        mvhd[12..16].copy_from_slice(&1000u32.to_be_bytes());
        mvhd[16..20].copy_from_slice(&duration_ms.to_be_bytes());
        let boxed = |kind: &[u8], body: &[u8]| {
            let mut b = ((body.len() + 8) as u32).to_be_bytes().to_vec();
            b.extend_from_slice(kind);
            b.extend_from_slice(body);
            b
        };
        let mut file = boxed(b"ftyp", b"isom\0\0\0\0");
        file.extend(boxed(b"moov", &boxed(b"mvhd", &mvhd)));
        file
    }

    #[test]
    fn reads_the_duration_of_an_mp4_and_nothing_else() {
        assert_eq!(mp4_duration_ms(&mp4(15_400)), Some(15_400));
        assert_eq!(mp4_duration_ms(b"not a video"), None);
        assert_eq!(mp4_duration_ms(&mp4(15_400)[..30]), None, "cut short");
        assert_eq!(duration_text(15_400), "0:15");
        assert_eq!(duration_text(75_000), "1:15");
    }
}
