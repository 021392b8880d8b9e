//! Fleet benchmark: what an agent process costs while it holds simulated phones online and idle.
//!
//! `cargo run --release -p phonefarm-agent --example fleet_bench [-- --phones 64 --window 10]`
//!
//! The simulated phones (phonesim) run in this process; the agent side runs in a child process
//! (this binary again, with `--child`), built like `phonefarm-agent`'s own runtime. For each
//! case the child connects, waits until every phone is online, then idles; we read its RSS
//! from `/proc/<pid>/status` and its CPU time from `/proc/<pid>/stat` over an idle window.
//! Cases: `baseline` (no phones), `tcp` (N phones over TCP), `usb` (N phones behind the USB code:
//! the USB manager over a fake bus whose interfaces are byte pipes to the simulator, so each
//! phone has the reader and writer threads of a real USB phone), and `rusb-poll` (no phones,
//! the manager polling the real libusb every second, as in a guest without udevd).

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use phonefarm_agent::adb::auth::{AdbKey, KeyRing};
use phonefarm_agent::phone::{PhoneHandle, PhoneOptions};
use phonefarm_agent::usb::fake::{BulkFaults, FakeUsb, StreamBulk};
use phonefarm_agent::usb::rusb_io::{Discovery, RusbBackend};
use phonefarm_agent::usb::{BulkIo, ManagerConfig, OpenError, UsbManager, UsbState};

const RSS_TARGET_MIB: f64 = 32.0;
const CPU_TARGET_PCT: f64 = 1.0;

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(mode) = arg(&args, "--child") {
        let addrs: Vec<String> = arg(&args, "--addrs")
            .unwrap_or_default()
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        child(&mode, addrs);
        return;
    }
    let phones: usize = arg(&args, "--phones")
        .and_then(|s| s.parse().ok())
        .unwrap_or(64);
    let window: u64 = arg(&args, "--window")
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    parent(phones, Duration::from_secs(window));
}

/// The agent side: hold the phones online, then idle until stdin closes.
fn child(mode: &str, addrs: Vec<String>) {
    // The same runtime as `phonefarm-agent` (main.rs).
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let key = AdbKey::generate().expect("key");
        let keys = KeyRing::new(vec![key]);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let mut held: Vec<PhoneHandle> = Vec::new();
        let mut managers: Vec<UsbManager> = Vec::new();
        match mode {
            "baseline" => {}
            "tcp" => {
                for a in &addrs {
                    let h = PhoneHandle::connect_tcp(a, PhoneOptions::new(keys.clone()))
                        .await
                        .expect("connect");
                    held.push(h);
                }
                for h in &held {
                    h.wait_online(deadline).await.expect("online");
                }
            }
            "usb" => {
                let bus = FakeUsb::new(false);
                for (i, a) in addrs.iter().enumerate() {
                    let a = a.clone();
                    let faults = Arc::new(BulkFaults::default());
                    bus.plug(&format!("1-{}.{}", i / 7 + 1, i % 7 + 1), None, move || {
                        StreamBulk::connect(&a, faults.clone())
                            .map(|b| Box::new(b) as Box<dyn BulkIo>)
                            .map_err(|_| OpenError::Gone)
                    });
                }
                let m = UsbManager::spawn(bus, ManagerConfig::new(keys.clone()));
                let n = addrs.len();
                m.wait_for(deadline, |ps| {
                    ps.len() == n && ps.iter().all(|p| p.state == UsbState::Online)
                })
                .await
                .expect("usb phones online");
                managers.push(m);
            }
            "rusb-poll" => {
                if let Some(b) = RusbBackend::new(Discovery::Poll) {
                    let m = UsbManager::spawn(b, ManagerConfig::new(keys.clone()));
                    m.rescan().await;
                    managers.push(m);
                }
            }
            other => panic!("unknown mode {other}"),
        }
        println!(
            "READY {}",
            held.len() + addrs.len() * usize::from(mode == "usb")
        );
        // Idle until the parent closes our stdin.
        let _ = tokio::task::spawn_blocking(|| {
            let mut s = String::new();
            let _ = std::io::stdin().read_line(&mut s);
        })
        .await;
        drop(held);
        drop(managers);
    });
}

struct Sample {
    rss_kib: u64,
    cpu_ticks: u64,
    threads: u64,
}

fn sample(pid: u32) -> Sample {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may contain spaces) start at field 3 (state).
    let rest: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    let num = |i: usize| rest.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    Sample {
        rss_kib: field("VmRSS:"),
        // utime is field 14, stime 15; rest[0] is field 3.
        cpu_ticks: num(11) + num(12),
        threads: field("Threads:"),
    }
}

fn clock_ticks_per_sec() -> f64 {
    // sysconf(_SC_CLK_TCK) is 100 on every Linux we run on.
    100.0
}

struct Measured {
    case: &'static str,
    phones: usize,
    rss_mib: f64,
    cpu_pct: f64,
    threads: u64,
    online_secs: f64,
}

fn measure(case: &'static str, addrs: &[String], window: Duration) -> Measured {
    let exe = std::env::current_exe().expect("own path");
    let started = Instant::now();
    let mut child: Child = Command::new(exe)
        .args(["--child", case, "--addrs", &addrs.join(",")])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("child starts");
    let pid = child.id();
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    out.read_line(&mut line).expect("child reports");
    assert!(line.starts_with("READY"), "child said {line:?}");
    let online_secs = started.elapsed().as_secs_f64();
    // Let start-up work (handshakes, first probes, allocator trimming) settle.
    std::thread::sleep(Duration::from_secs(2));
    let a = sample(pid);
    let t0 = Instant::now();
    std::thread::sleep(window);
    let b = sample(pid);
    let secs = t0.elapsed().as_secs_f64();
    drop(child.stdin.take());
    let _ = child.wait();
    Measured {
        case,
        phones: addrs.len(),
        rss_mib: b.rss_kib as f64 / 1024.0,
        cpu_pct: (b.cpu_ticks.saturating_sub(a.cpu_ticks)) as f64 / clock_ticks_per_sec() / secs
            * 100.0,
        threads: b.threads,
        online_secs,
    }
}

fn parent(phones: usize, window: Duration) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let sims: Vec<_> = rt.block_on(async {
        let mut v = Vec::new();
        for i in 0..phones {
            v.push(
                phonefarm_phonesim::spawn(phonefarm_phonesim::SimConfig::with_serial(&format!(
                    "BENCH{i:03}"
                )))
                .await
                .expect("sim"),
            );
        }
        v
    });
    let addrs: Vec<String> = sims.iter().map(|s| s.address()).collect();
    println!(
        "fleet_bench: {phones} simulated phones, idle window {:?}, agent side in a child process",
        window
    );
    let results = [
        measure("baseline", &[], window),
        measure("tcp", &addrs, window),
        measure("usb", &addrs, window),
        measure("rusb-poll", &[], window),
    ];
    let base = &results[0];
    println!(
        "{:<10} {:>6} {:>9} {:>8} {:>9} {:>8} {:>8} {:>9}",
        "case", "phones", "rss_mib", "x_base", "cpu_%", "threads", "ready_s", "targets"
    );
    for r in &results {
        let ok = r.rss_mib < RSS_TARGET_MIB && r.cpu_pct < CPU_TARGET_PCT;
        println!(
            "{:<10} {:>6} {:>9.1} {:>8.2} {:>9.2} {:>8} {:>8.1} {:>9}",
            r.case,
            r.phones,
            r.rss_mib,
            r.rss_mib / base.rss_mib.max(0.1),
            r.cpu_pct,
            r.threads,
            r.online_secs,
            if ok { "met" } else { "MISSED" }
        );
    }
    for r in &results[1..3] {
        println!(
            "{}: {:.0} KiB and {:.3}% of a core per phone above baseline",
            r.case,
            (r.rss_mib - base.rss_mib) * 1024.0 / r.phones.max(1) as f64,
            (r.cpu_pct - base.cpu_pct) / r.phones.max(1) as f64
        );
    }
    println!("targets: rss < {RSS_TARGET_MIB} MiB, idle cpu < {CPU_TARGET_PCT}% of a core");
    drop(sims);
}
