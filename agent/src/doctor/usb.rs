//! The USB checks, on what sysfs and devfs show (under roots a test can move).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::Check;

/// The packaged udev rule's file name.
pub const UDEV_RULE: &str = "70-phonefarm-adb.rules";

/// One USB device with an ADB interface (class ff, subclass 42, protocol 01).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdbDevice {
    /// sysfs name = port path, e.g. `1-2.3`.
    pub port_path: String,
    pub busnum: u32,
    pub devnum: u32,
    pub serial: Option<String>,
    /// The ADB interface's sysfs name, e.g. `1-2.3:1.0`.
    pub interface: String,
    /// The driver bound to the interface (`usbfs`: a program claimed it).
    pub driver: Option<String>,
    /// Which host controller (the root hub's parent device, else the bus).
    pub controller: String,
}

impl AdbDevice {
    /// External hubs between the root hub and the phone: `1-2.3.4` has two (at 2 and 2.3).
    pub fn hub_tiers(&self) -> usize {
        self.port_path
            .split_once('-')
            .map_or(0, |(_, ports)| ports.split('.').count().saturating_sub(1))
    }

    pub fn label(&self) -> String {
        match &self.serial {
            Some(s) => format!("{} ({s})", self.port_path),
            None => self.port_path.clone(),
        }
    }
}

/// What `/sys/bus/usb/devices` shows.
#[derive(Debug, Clone, Default)]
pub struct Sysfs {
    pub devices: Vec<AdbDevice>,
}

fn read_trim(p: &Path) -> Option<String> {
    std::fs::read_to_string(p)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

impl Sysfs {
    pub fn scan(root: &Path) -> Sysfs {
        let dir = root.join("bus/usb/devices");
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        let mut devices = Vec::new();
        for iface in names.iter().filter(|n| n.contains(':')) {
            let at = dir.join(iface);
            let class = |f: &str| read_trim(&at.join(f)).map(|s| s.to_ascii_lowercase());
            let adb = class("bInterfaceClass").as_deref() == Some("ff")
                && class("bInterfaceSubClass").as_deref() == Some("42")
                && class("bInterfaceProtocol").as_deref() == Some("01");
            if !adb {
                continue;
            }
            let Some((port_path, _)) = iface.split_once(':') else {
                continue;
            };
            let dev = dir.join(port_path);
            let num = |f: &str| read_trim(&dev.join(f)).and_then(|s| s.parse::<u32>().ok());
            let (Some(busnum), Some(devnum)) = (num("busnum"), num("devnum")) else {
                continue;
            };
            let driver = std::fs::read_link(at.join("driver"))
                .ok()
                .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
            let root_hub = dir.join(format!("usb{busnum}"));
            let controller = match std::fs::read_link(&root_hub) {
                Ok(_) => std::fs::canonicalize(&root_hub)
                    .ok()
                    .and_then(|p| p.parent().map(|p| p.display().to_string()))
                    .unwrap_or_else(|| format!("bus {busnum}")),
                Err(_) => format!("bus {busnum}"),
            };
            devices.push(AdbDevice {
                port_path: port_path.to_string(),
                busnum,
                devnum,
                serial: read_trim(&dev.join("serial")),
                interface: iface.clone(),
                driver,
                controller,
            });
        }
        Sysfs { devices }
    }

    pub fn adb_devices(&self) -> impl Iterator<Item = &AdbDevice> {
        self.devices.iter()
    }
}

/// libusb initialises (from its outcome: `Ok((version, hotplug))`, or the error).
pub fn libusb_verdict(outcome: Result<(String, bool), String>) -> Check {
    match outcome {
        Ok((version, hotplug)) => Check::pass(
            "libusb",
            format!(
                "libusb {version}, hotplug {}",
                if hotplug {
                    "supported"
                } else {
                    "unsupported (the agent polls)"
                }
            ),
        ),
        Err(e) => Check::fail(
            "libusb",
            format!("libusb cannot initialise: {e}"),
            "install libusb-1.0-0 (apt-get install libusb-1.0-0) and make sure /dev/bus/usb exists",
        ),
    }
}

pub fn libusb() -> Check {
    let outcome = rusb::Context::new()
        .map(|_| {
            let v = rusb::version();
            (
                format!("{}.{}.{}", v.major(), v.minor(), v.micro()),
                rusb::has_hotplug(),
            )
        })
        .map_err(|e| e.to_string());
    libusb_verdict(outcome)
}

/// A rule line that gives access to ADB interfaces: it matches class ff / subclass 42 /
/// protocol 01 (as `ID_USB_INTERFACES` or interface attributes) and sets a group, a mode or
/// `uaccess`.
fn grants_adb(line: &str) -> bool {
    let line = line.trim();
    if line.starts_with('#') {
        return false;
    }
    let matches = line.contains(":ff4201:")
        || (line.contains("bInterfaceClass}==\"ff\"")
            && line.contains("bInterfaceSubClass}==\"42\""));
    let grants = line.contains("GROUP=") || line.contains("MODE=") || line.contains("uaccess");
    matches && grants
}

pub fn udev_rule(dirs: &[PathBuf]) -> Check {
    for dir in dirs {
        let Ok(rd) = std::fs::read_dir(dir) else {
            continue;
        };
        let mut files: Vec<PathBuf> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "rules"))
            .collect();
        files.sort();
        for f in files {
            if std::fs::read_to_string(&f).is_ok_and(|t| t.lines().any(grants_adb)) {
                return Check::pass(
                    "udev-rule",
                    format!("{} grants access to ADB interfaces", f.display()),
                );
            }
        }
    }
    Check::fail(
        "udev-rule",
        "no udev rule grants access to ADB interfaces (class ff, subclass 42, protocol 01)",
        format!(
            "install the phonefarm-agent package (it ships /usr/lib/udev/rules.d/{UDEV_RULE}), then `udevadm control --reload && udevadm trigger`"
        ),
    )
}

/// Each phone's device node opens read-write for this user (as libusb opens it).
pub fn device_access(sys: &Sysfs, dev_root: &Path, uid: Option<u32>) -> Check {
    if sys.devices.is_empty() {
        return Check::warn(
            "device-access",
            "no phone with an ADB interface on USB",
            "plug a phone in, unlock it and enable USB debugging (Developer options)",
        );
    }
    let mut denied = Vec::new();
    for d in &sys.devices {
        let node = dev_root.join(format!("bus/usb/{:03}/{:03}", d.busnum, d.devnum));
        if let Err(e) = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&node)
        {
            denied.push(format!("{} {}: {e}", d.label(), node.display()));
        }
    }
    if !denied.is_empty() {
        return Check::fail(
            "device-access",
            format!("cannot open {}", denied.join("; ")),
            format!(
                "install {UDEV_RULE}, add the agent's user to group phonefarm, then replug the phones (or `udevadm trigger`)"
            ),
        );
    }
    let detail = format!("{} phone node(s) open read-write", sys.devices.len());
    if uid == Some(0) {
        return Check::warn(
            "device-access",
            format!("{detail}, but as root, which proves nothing for the agent's user"),
            "run it as the agent: sudo -u phonefarm phonefarm-agent doctor",
        );
    }
    Check::pass("device-access", detail)
}

/// Processes named `adb` (their pids), from `/proc`.
fn adb_processes() -> Vec<u32> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| read_trim(Path::new(&format!("/proc/{pid}/comm"))).as_deref() == Some("adb"))
        .collect()
}

/// No adb server on `port` (it would hold the phones' interfaces), nor an `adb` process.
pub async fn adb_server(port: u16) -> Check {
    let listening = tokio::time::timeout(
        Duration::from_millis(500),
        tokio::net::TcpStream::connect(("127.0.0.1", port)),
    )
    .await
    .is_ok_and(|r| r.is_ok());
    adb_server_verdict(port, listening, &adb_processes())
}

pub fn adb_server_verdict(port: u16, listening: bool, pids: &[u32]) -> Check {
    if !listening && pids.is_empty() {
        return Check::pass(
            "adb-server",
            format!("nothing listens on 127.0.0.1:{port}, no adb process"),
        );
    }
    let mut what = Vec::new();
    if listening {
        what.push(format!(
            "something listens on 127.0.0.1:{port} (an adb server)"
        ));
    }
    if !pids.is_empty() {
        let pids: Vec<String> = pids.iter().map(u32::to_string).collect();
        what.push(format!("adb process(es) {}", pids.join(", ")));
    }
    Check::fail(
        "adb-server",
        format!(
            "{}: it claims the phones before the agent can",
            what.join("; ")
        ),
        "run `adb kill-server` and stop whatever starts it (an IDE, a service); the agent speaks ADB itself",
    )
}

/// ADB interfaces a program holds through usbfs (the agent itself when it runs, else another).
pub fn claimed(sys: &Sysfs) -> Check {
    let held: Vec<String> = sys
        .devices
        .iter()
        .filter(|d| d.driver.as_deref() == Some("usbfs"))
        .map(|d| d.interface.clone())
        .collect();
    if held.is_empty() {
        return Check::pass("usb-claimed", "no ADB interface is claimed");
    }
    Check::warn(
        "usb-claimed",
        format!("claimed through usbfs: {}", held.join(", ")),
        "fine if the phonefarm-agent service runs; otherwise stop the program holding them (adb, another agent)",
    )
}

/// Phones per host controller against the budget: above it fails, from 5 below it warns.
pub fn controllers(sys: &Sysfs, budget: usize) -> Check {
    let mut per: BTreeMap<&str, usize> = BTreeMap::new();
    for d in &sys.devices {
        *per.entry(d.controller.as_str()).or_default() += 1;
    }
    let Some((worst, n)) = per.iter().max_by_key(|(_, n)| **n).map(|(c, n)| (*c, *n)) else {
        return Check::pass("usb-controllers", "no phones on USB yet");
    };
    let detail = format!(
        "{n} phone(s) on the busiest host controller ({worst}), {} controller(s), budget {budget}",
        per.len()
    );
    let fix = "move phones to another host controller (a PCIe USB card) or another host";
    if n > budget {
        Check::fail("usb-controllers", detail, fix)
    } else if n + 5 > budget {
        Check::warn("usb-controllers", detail, fix)
    } else {
        Check::pass("usb-controllers", detail)
    }
}

/// Phones behind more than 3 tiers of hubs (USB allows 5; deep chains drop devices).
pub fn hub_depth(sys: &Sysfs) -> Check {
    let deep: Vec<String> = sys
        .devices
        .iter()
        .filter(|d| d.hub_tiers() > 3)
        .map(|d| format!("{} ({} tiers)", d.port_path, d.hub_tiers()))
        .collect();
    let Some(max) = sys.devices.iter().map(AdbDevice::hub_tiers).max() else {
        return Check::pass("usb-hub-depth", "no phones on USB yet");
    };
    if deep.is_empty() {
        return Check::pass(
            "usb-hub-depth",
            format!("at most {max} hub tier(s) between a phone and its root hub"),
        );
    }
    Check::warn(
        "usb-hub-depth",
        format!("behind more than 3 hub tiers: {}", deep.join(", ")),
        "plug those hubs closer to the host (at most 3 tiers)",
    )
}

/// MB of usbfs buffers the kernel allows: each phone keeps a read and a write of up to 1 MiB in
/// flight, so 2 MB per phone plus 16 MB (the kernel's default) for everything else.
pub fn usbfs_memory(sysfs_root: &Path, phones: usize) -> Check {
    let path = sysfs_root.join("module/usbcore/parameters/usbfs_memory_mb");
    let fix = "echo 0 > /sys/module/usbcore/parameters/usbfs_memory_mb (no limit); keep it with usbcore.usbfs_memory_mb=0 on the kernel command line";
    let Some(mb) = read_trim(&path).and_then(|s| s.parse::<u64>().ok()) else {
        return Check::warn(
            "usbfs-memory",
            format!("cannot read {}", path.display()),
            fix,
        );
    };
    let need = 16 + 2 * phones as u64;
    if mb == 0 {
        Check::pass("usbfs-memory", "usbfs_memory_mb = 0 (no limit)")
    } else if mb < need {
        Check::warn(
            "usbfs-memory",
            format!(
                "usbfs_memory_mb = {mb}, {phones} phone(s) need {need}: transfers fail with ENOMEM under load"
            ),
            fix,
        )
    } else {
        Check::pass(
            "usbfs-memory",
            format!("usbfs_memory_mb = {mb}, {phones} phone(s) need {need}"),
        )
    }
}
