//! `phonefarm-agent doctor`: each check made to fail, on fake sysfs/devfs trees and simulated
//! phones. (The NATS checks against a real nats-server in operator mode are in
//! tests/e2e/tests/doctor.rs, with the coordinator's enrollment.)

use std::path::{Path, PathBuf};

use phonefarm_agent::doctor::usb::{self, Sysfs};
use phonefarm_agent::doctor::{Check, Status, host, nats};
use phonefarm_phonesim::{AuthMode, KeyOffer, SimConfig, spawn};

/// A fake `/sys` and `/dev`: phones as `(port path, bus, dev)` with an ADB interface.
struct Tree {
    root: tempfile::TempDir,
}

impl Tree {
    fn new() -> Tree {
        let t = Tree {
            root: tempfile::tempdir().unwrap(),
        };
        std::fs::create_dir_all(t.sys().join("bus/usb/devices")).unwrap();
        std::fs::create_dir_all(t.sys().join("module/usbcore/parameters")).unwrap();
        t
    }

    fn sys(&self) -> PathBuf {
        self.root.path().join("sys")
    }

    fn dev(&self) -> PathBuf {
        self.root.path().join("dev")
    }

    fn phone(&self, port_path: &str, bus: u32, dev: u32, node: bool) -> &Self {
        let devices = self.sys().join("bus/usb/devices");
        let d = devices.join(port_path);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("busnum"), format!("{bus}\n")).unwrap();
        std::fs::write(d.join("devnum"), format!("{dev}\n")).unwrap();
        std::fs::write(d.join("serial"), format!("SER{bus}{dev}\n")).unwrap();
        let i = devices.join(format!("{port_path}:1.0"));
        std::fs::create_dir_all(&i).unwrap();
        for (f, v) in [
            ("bInterfaceClass", "ff"),
            ("bInterfaceSubClass", "42"),
            ("bInterfaceProtocol", "01"),
        ] {
            std::fs::write(i.join(f), format!("{v}\n")).unwrap();
        }
        // A mass-storage interface beside it is not a phone.
        let other = devices.join(format!("{port_path}:1.1"));
        std::fs::create_dir_all(&other).unwrap();
        std::fs::write(other.join("bInterfaceClass"), "08\n").unwrap();
        if node {
            let n = self.dev().join(format!("bus/usb/{bus:03}/{dev:03}"));
            std::fs::create_dir_all(n.parent().unwrap()).unwrap();
            std::fs::write(n, b"").unwrap();
        }
        self
    }

    fn claim(&self, port_path: &str) {
        let i = self.sys().join(format!("bus/usb/devices/{port_path}:1.0"));
        std::os::unix::fs::symlink("../../../bus/usb/drivers/usbfs", i.join("driver")).unwrap();
    }

    fn scan(&self) -> Sysfs {
        Sysfs::scan(&self.sys())
    }
}

fn assert_status(c: &Check, want: Status) {
    assert_eq!(c.status, want, "{c:?}");
    assert!(!c.detail.is_empty(), "{c:?}");
    if want != Status::Pass {
        assert!(
            !c.fix.is_empty() && !c.fix.contains('\n'),
            "a one-line fix: {c:?}"
        );
    }
}

#[test]
fn the_sysfs_scan_finds_adb_interfaces_only() {
    let t = Tree::new();
    t.phone("1-2", 1, 4, true).phone("3-1.4.2", 3, 9, true);
    let s = t.scan();
    let found: Vec<(&str, u32, u32, usize)> = s
        .devices
        .iter()
        .map(|d| (d.port_path.as_str(), d.busnum, d.devnum, d.hub_tiers()))
        .collect();
    assert_eq!(found, [("1-2", 1, 4, 0), ("3-1.4.2", 3, 9, 2)]);
    assert_eq!(s.devices[0].serial.as_deref(), Some("SER14"));
}

#[test]
fn libusb_fails_when_it_cannot_initialise() {
    assert_status(
        &usb::libusb_verdict(Ok(("1.0.26".into(), true))),
        Status::Pass,
    );
    assert_status(
        &usb::libusb_verdict(Err("Other error".into())),
        Status::Fail,
    );
}

#[test]
fn the_udev_check_fails_without_the_packaged_rule_and_passes_with_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("60-other.rules"),
        "SUBSYSTEM==\"block\", GROUP=\"disk\"\n",
    )
    .unwrap();
    // Commented out is not installed.
    std::fs::write(
        dir.path().join("71-commented.rules"),
        "# ENV{ID_USB_INTERFACES}==\"*:ff4201:*\", GROUP=\"phonefarm\"\n",
    )
    .unwrap();
    let dirs = vec![
        dir.path().to_path_buf(),
        PathBuf::from("/nonexistent/rules.d"),
    ];
    assert_status(&usb::udev_rule(&dirs), Status::Fail);
    let packaged = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/package/agent")
        .join(usb::UDEV_RULE);
    std::fs::copy(&packaged, dir.path().join(usb::UDEV_RULE)).unwrap();
    let c = usb::udev_rule(&dirs);
    assert_status(&c, Status::Pass);
    assert!(c.detail.contains(usb::UDEV_RULE), "{c:?}");
}

#[test]
fn device_access_fails_when_a_phone_node_cannot_be_opened() {
    let t = Tree::new();
    assert_status(
        &usb::device_access(&t.scan(), &t.dev(), Some(1000)),
        Status::Warn,
    );
    t.phone("1-2", 1, 4, true);
    assert_status(
        &usb::device_access(&t.scan(), &t.dev(), Some(1000)),
        Status::Pass,
    );
    // As root an open proves nothing for the agent's user.
    assert_status(
        &usb::device_access(&t.scan(), &t.dev(), Some(0)),
        Status::Warn,
    );
    t.phone("1-3", 1, 5, false);
    let c = usb::device_access(&t.scan(), &t.dev(), Some(1000));
    assert_status(&c, Status::Fail);
    assert!(
        c.detail.contains("1-3") && c.detail.contains("bus/usb/001/005"),
        "{c:?}"
    );
}

#[tokio::test]
async fn an_adb_server_on_the_port_fails() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let c = usb::adb_server(port).await;
    assert_status(&c, Status::Fail);
    assert!(c.fix.contains("adb kill-server"), "{c:?}");
    drop(l);
    assert_status(&usb::adb_server_verdict(port, false, &[]), Status::Pass);
    assert_status(&usb::adb_server_verdict(port, false, &[4242]), Status::Fail);
}

#[test]
fn claimed_interfaces_warn() {
    let t = Tree::new();
    t.phone("1-2", 1, 4, true).phone("1-3", 1, 5, true);
    assert_status(&usb::claimed(&t.scan()), Status::Pass);
    t.claim("1-3");
    let c = usb::claimed(&t.scan());
    assert_status(&c, Status::Warn);
    assert!(
        c.detail.contains("1-3:1.0") && !c.detail.contains("1-2:1.0"),
        "{c:?}"
    );
}

#[test]
fn too_many_phones_on_one_controller_fail() {
    let t = Tree::new();
    for i in 0..24 {
        t.phone(&format!("1-1.{}", i + 1), 1, i + 2, false);
    }
    t.phone("2-1", 2, 2, false);
    assert_status(&usb::controllers(&t.scan(), 30), Status::Pass);
    for i in 24..31 {
        t.phone(&format!("1-1.{}", i + 1), 1, i + 2, false);
    }
    let c = usb::controllers(&t.scan(), 30);
    assert_status(&c, Status::Fail);
    assert!(c.detail.starts_with("31 phone(s)"), "{c:?}");
    assert_status(&usb::controllers(&t.scan(), 34), Status::Warn);
}

#[test]
fn phones_behind_more_than_three_hub_tiers_warn() {
    let t = Tree::new();
    assert_eq!(usb::hub_depth(&t.scan()).detail, "no phones on USB yet");
    t.phone("1-1.2.3.4", 1, 2, false);
    assert_status(&usb::hub_depth(&t.scan()), Status::Pass);
    t.phone("1-1.2.3.4.1", 1, 3, false);
    let c = usb::hub_depth(&t.scan());
    assert_status(&c, Status::Warn);
    assert!(c.detail.contains("1-1.2.3.4.1 (4 tiers)"), "{c:?}");
}

#[test]
fn a_small_usbfs_memory_limit_warns() {
    let t = Tree::new();
    let f = t.sys().join("module/usbcore/parameters/usbfs_memory_mb");
    assert_status(&usb::usbfs_memory(&t.sys(), 10), Status::Warn);
    std::fs::write(&f, "16\n").unwrap();
    let c = usb::usbfs_memory(&t.sys(), 10);
    assert_status(&c, Status::Warn);
    assert!(c.detail.contains("need 36"), "{c:?}");
    std::fs::write(&f, "0\n").unwrap();
    assert_status(&usb::usbfs_memory(&t.sys(), 10), Status::Pass);
    std::fs::write(&f, "64\n").unwrap();
    assert_status(&usb::usbfs_memory(&t.sys(), 10), Status::Pass);
}

#[test]
fn clock_skew_fails_beyond_five_seconds() {
    let t0 = time::OffsetDateTime::now_utc();
    let t1 = t0 + time::Duration::milliseconds(20);
    assert_status(
        &nats::clock_verdict(t0 + time::Duration::milliseconds(10), t0, t1),
        Status::Pass,
    );
    assert_status(
        &nats::clock_verdict(t0 + time::Duration::seconds(3), t0, t1),
        Status::Warn,
    );
    let c = nats::clock_verdict(t0 - time::Duration::seconds(10), t0, t1);
    assert_status(&c, Status::Fail);
    assert!(c.detail.starts_with("-10.0"), "{c:?}");
}

#[test]
fn an_unwritable_or_full_journal_fails() {
    let dir = tempfile::tempdir().unwrap();
    assert_status(
        &host::journal(&dir.path().join("state/journal")),
        Status::Pass,
    );
    // A file where the directory should be: no user, root included, can make it.
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    assert_status(&host::journal(&file.join("journal")), Status::Fail);
    assert_status(
        &host::journal_space(dir.path(), 100 * 1024 * 1024),
        Status::Fail,
    );
    assert_status(
        &host::journal_space(dir.path(), 1024 * 1024 * 1024),
        Status::Warn,
    );
}

#[test]
fn flow_packs_that_do_not_load_fail() {
    let good = Path::new(env!("CARGO_MANIFEST_DIR")).join("../flowpacks");
    let c = host::flow_packs(Some(&good));
    assert_status(&c, Status::Pass);
    assert!(c.detail.contains("tiktok-33"), "{c:?}");
    let dir = tempfile::tempdir().unwrap();
    assert_status(&host::flow_packs(Some(dir.path())), Status::Warn);
    std::fs::write(dir.path().join("broken.toml"), "name = [\n").unwrap();
    assert_status(&host::flow_packs(Some(dir.path())), Status::Fail);
}

#[test]
fn a_low_or_hot_battery_fails() {
    let c = |b, t| host::phone_verdict("phone x".into(), b, t, 20, 450);
    assert_status(&c(Some(85), Some(287)), Status::Pass);
    assert_status(&c(Some(5), Some(287)), Status::Fail);
    assert_status(&c(Some(85), Some(520)), Status::Fail);
    assert_status(&c(None, Some(287)), Status::Warn);
}

async fn doctor(state: &Path, global: &[&str], args: &[&str]) -> (i32, Vec<serde_json::Value>) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_phonefarm-agent"))
        .arg("--state-dir")
        .arg(state)
        .args(["--timeout", "5", "--config", "/dev/null"])
        .args(global)
        .args([
            "doctor",
            "--json",
            "--agent-id",
            "rack-07",
            "--nats-url",
            "nats://127.0.0.1:1",
        ])
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
        .expect("agent runs");
    let checks: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code().unwrap_or(-1), checks)
}

fn check<'a>(checks: &'a [serde_json::Value], name: &str) -> &'a serde_json::Value {
    checks
        .iter()
        .find(|c| c["check"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {checks:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_phone_is_checked_authorized_with_battery_and_temperature() {
    let ok = spawn(SimConfig::with_serial("SIMOK")).await.unwrap();
    let mut low = SimConfig::with_serial("SIMLOW");
    low.model.battery_level = 4;
    let low = spawn(low).await.unwrap();
    let mut refusing = SimConfig::with_serial("SIMNO");
    refusing.auth = AuthMode::Required {
        known_keys: Vec::new(),
        on_offer: KeyOffer::Refuse,
    };
    let refusing = spawn(refusing).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let tcp = format!("{},{},{}", ok.address(), low.address(), refusing.address());
    let (code, checks) = doctor(dir.path(), &["--usb-discovery", "off", "--tcp", &tcp], &[]).await;
    assert_eq!(code, 1, "{checks:?}");
    let phone = |addr: String| check(&checks, &format!("phone {addr}")).clone();
    let p = phone(ok.address());
    assert_eq!(p["status"], "PASS", "{p}");
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("battery 85%, 28.7 °C"),
        "{p}"
    );
    let p = phone(low.address());
    assert_eq!(p["status"], "FAIL", "{p}");
    assert!(p["detail"].as_str().unwrap().contains("battery 4%"), "{p}");
    let p = phone(refusing.address());
    assert_eq!(p["status"], "FAIL", "{p}");
    assert!(
        p["detail"].as_str().unwrap().starts_with("unauthorized"),
        "{p}"
    );
    // No NATS server there: its check fails with the fix, and nothing else is tried.
    assert_eq!(check(&checks, "nats-connect")["status"], "FAIL");
    assert!(checks.iter().all(|c| c["check"] != "nats-publish-own"));
    assert_eq!(check(&checks, "journal")["status"], "PASS");
}

#[tokio::test]
async fn the_usb_checks_read_the_trees_the_flags_name() {
    let t = Tree::new();
    t.phone("1-2", 1, 4, false);
    let rules = tempfile::tempdir().unwrap();
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port().to_string();
    let dir = tempfile::tempdir().unwrap();
    let (code, checks) = doctor(
        dir.path(),
        &["--usb-discovery", "poll"],
        &[
            "--sysfs-root",
            t.sys().to_str().unwrap(),
            "--dev-root",
            t.dev().to_str().unwrap(),
            "--udev-rules-dirs",
            rules.path().to_str().unwrap(),
            "--adb-port",
            &port,
        ],
    )
    .await;
    assert_eq!(code, 1);
    for name in ["udev-rule", "device-access", "adb-server"] {
        assert_eq!(check(&checks, name)["status"], "FAIL", "{name}: {checks:?}");
    }
    assert!(
        check(&checks, "device-access")["detail"]
            .as_str()
            .unwrap()
            .contains("1-2 (SER14)")
    );
}
