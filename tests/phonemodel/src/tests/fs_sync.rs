//! The sync-facing filesystem API: write, stat, list, read, modes and times.

use super::phone;
use crate::{FileStat, Identity, Phone, PhoneConfig, UiVariant};

#[test]
fn write_stat_read_round_trip() {
    let mut p = phone(UiVariant::A);
    p.write(
        "/data/local/tmp/agent.bin",
        vec![7; 1000],
        0o100755,
        1_700_000_123,
    )
    .unwrap();
    assert_eq!(
        p.stat("/data/local/tmp/agent.bin"),
        Some(FileStat {
            mode: 0o100755,
            size: 1000,
            mtime: 1_700_000_123
        })
    );
    assert_eq!(p.read("/data/local/tmp/agent.bin"), Some(vec![7; 1000]));
    // Permission bits alone are a regular file; overwriting replaces data, mode and time.
    p.write("/data/local/tmp/agent.bin", b"new".to_vec(), 0o644, 5)
        .unwrap();
    assert_eq!(
        p.stat("/data/local/tmp/agent.bin"),
        Some(FileStat {
            mode: 0o100644,
            size: 3,
            mtime: 5
        })
    );
    assert_eq!(p.read("/nope"), None);
    assert_eq!(p.stat("/nope"), None);
}

#[test]
fn directories_and_listing() {
    let mut p = phone(UiVariant::A);
    let dcim = p.stat("/sdcard/DCIM/Camera").expect("camera dir");
    assert_eq!(dcim.mode & 0o170000, 0o040000);
    p.write("/sdcard/DCIM/Camera/b.mp4", vec![1; 3], 0o100660, 10)
        .unwrap();
    p.write("/sdcard/DCIM/Camera/a.mp4", vec![1; 2], 0o100660, 11)
        .unwrap();
    p.write("/sdcard/DCIM/Camera/sub/c.mp4", vec![1], 0o100660, 12)
        .unwrap();
    let names: Vec<_> = p
        .list("/sdcard/DCIM/Camera")
        .expect("dir")
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names, vec!["a.mp4", "b.mp4", "sub"]);
    let entries = p.list("/storage/emulated/0/DCIM/Camera/").expect("alias");
    assert_eq!(
        entries[0].1,
        FileStat {
            mode: 0o100660,
            size: 2,
            mtime: 11
        }
    );
    assert_eq!(entries[2].1.mode & 0o170000, 0o040000);
    assert_eq!(
        p.list("/sdcard/DCIM/Camera/a.mp4"),
        None,
        "a file is not a directory"
    );
    assert_eq!(p.list("/nope"), None);
    let root: Vec<_> = p
        .list("/")
        .expect("root")
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert!(root.contains(&"sdcard".to_string()) && root.contains(&"data".to_string()));
}

#[test]
fn write_errors() {
    let mut p = Phone::with_config(
        Identity::default(),
        PhoneConfig {
            storage_free: 100,
            ..PhoneConfig::default()
        },
    );
    assert_eq!(
        p.write("/system/bin/evil", vec![], 0o755, 1),
        Err("Read-only file system".into())
    );
    assert_eq!(
        p.write("/sdcard/DCIM", vec![], 0o644, 1),
        Err("Is a directory".into())
    );
    assert_eq!(
        p.write("/data/app/x.apk", vec![], 0o644, 1),
        Err("Permission denied".into())
    );
    assert_eq!(
        p.write("/top.txt", vec![], 0o644, 1),
        Err("Read-only file system".into())
    );
    assert_eq!(
        p.write("/sdcard", vec![], 0o644, 1),
        Err("Is a directory".into())
    );
    p.write("/data/local/tmp/ok", vec![], 0o644, 1).unwrap();
    assert_eq!(
        p.write("/sdcard/big", vec![0; 101], 0o644, 1),
        Err("No space left on device".into())
    );
    p.write("/sdcard/ok", vec![0; 60], 0o644, 1).unwrap();
    assert_eq!(p.storage_free(), 40);
    assert_eq!(
        p.write("/sdcard/more", vec![0; 41], 0o644, 1),
        Err("No space left on device".into())
    );
    // Replacing a file frees its old size first.
    p.write("/sdcard/ok", vec![0; 100], 0o644, 1).unwrap();
    assert_eq!(
        p.write("/sdcard/ok/child", vec![], 0o644, 1),
        Err("Not a directory".into())
    );
    assert_eq!(
        p.write("/sdcard/dir", vec![], 0o040755, 1),
        Err("Invalid argument".into())
    );
}

#[test]
fn reboot_keeps_files() {
    let mut p = phone(UiVariant::A);
    p.write("/sdcard/DCIM/Camera/x.mp4", vec![1], 0o644, 1)
        .unwrap();
    p.reboot();
    assert_eq!(p.read("/sdcard/DCIM/Camera/x.mp4"), Some(vec![1]));
}
