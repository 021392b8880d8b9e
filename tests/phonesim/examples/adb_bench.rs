//! Throughput and latency of our ADB host against Debian's `adb`, both talking to simulated
//! phones on loopback:
//!
//! `cargo run --release -p phonefarm-phonesim --example adb_bench -- [MiB] [shells] [runs]`
//!
//! Ours runs in-process over one TCP connection (as the agent does); adb runs as the CLI
//! client through its own isolated server, as an operator would use it. The pushes are
//! interleaved (ours, ours, adb; `runs` times) so load from other processes hits all of them
//! alike, and the medians are compared.
//!
//! The simulated phones run on their own runtime (their own two threads), as a phone is a
//! device of its own: our host gets the bench's runtime, adb its own processes.
//!
//! Two simulated phones: one advertising `delayed_ack` (as current adbd does; our host then
//! keeps a window of WRTEs in flight, Debian's adb 29 predates the feature and keeps one),
//! and one without it (both hosts wait for each OKAY). adb's figures come from the first; it
//! speaks the same protocol to both.

use std::time::{Duration, Instant};

use bytes::Bytes;
use phonefarm_agent::adb::auth::{AdbKey, KeyRing};
use phonefarm_agent::phone::{PhoneHandle, PhoneOptions, PushSource};
use phonefarm_phonesim::real_adb::{AdbServer, adb_available};
use phonefarm_phonesim::{Sim, SimConfig, spawn};

fn mib_s(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / (1024.0 * 1024.0) / d.as_secs_f64()
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort_unstable();
    v[v.len() / 2]
}

fn list(v: &[Duration]) -> String {
    v.iter()
        .map(|d| format!("{:.0}", d.as_secs_f64() * 1000.0))
        .collect::<Vec<_>>()
        .join("/")
}

async fn push_ours(
    phone: &PhoneHandle,
    sim: &Sim,
    data: &Bytes,
    path: &str,
) -> anyhow::Result<Duration> {
    let far = tokio::time::Instant::now() + Duration::from_secs(600);
    let t = Instant::now();
    phone
        .push(
            PushSource::Bytes(data.clone()),
            path,
            0o644,
            far,
            &mut |_, _| {},
        )
        .await?;
    let took = t.elapsed();
    let ok = sim.phone.lock().unwrap().read(path).as_deref() == Some(&data[..]);
    anyhow::ensure!(ok, "pushed bytes differ");
    sim.phone.lock().unwrap().shell(&format!("rm {path}"));
    Ok(took)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mib: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(100);
    let shells: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(1000);
    let runs: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(3)
        .max(1);
    let load_before = loadavg();
    let phones_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("phonesim")
        .enable_all()
        .build()?;
    let sim = phones_rt
        .spawn(spawn(SimConfig::default().with_feature("delayed_ack")))
        .await??;
    let plain = phones_rt.spawn(spawn(SimConfig::default())).await??;
    let addr = sim.address();
    let data = Bytes::from(
        (0..mib * 1024 * 1024)
            .map(|i| (i * 31 % 251) as u8)
            .collect::<Vec<u8>>(),
    );
    println!(
        "simulators at {addr} (delayed_ack) and {} (without); payload {mib} MiB x {runs} runs; {shells} sequential shells; load average {load_before}",
        plain.address()
    );

    let key = AdbKey::generate()?;
    let opts = PhoneOptions::new(KeyRing::new(vec![key]));
    let phone = PhoneHandle::connect_tcp(&addr, opts.clone()).await?;
    let phone_plain = PhoneHandle::connect_tcp(&plain.address(), opts).await?;
    let far = tokio::time::Instant::now() + Duration::from_secs(600);
    anyhow::ensure!(phone.wait_online(far).await?.delayed_ack);
    anyhow::ensure!(!phone_plain.wait_online(far).await?.delayed_ack);

    let adb = if adb_available() {
        let file = tempfile::NamedTempFile::new()?;
        std::fs::write(file.path(), &data)?;
        let a2 = addr.clone();
        let server = tokio::task::spawn_blocking(move || -> anyhow::Result<AdbServer> {
            let adb = AdbServer::start()?;
            adb.connect(&a2, Duration::from_secs(20))?;
            Ok(adb)
        })
        .await??;
        Some((std::sync::Arc::new(server), file))
    } else {
        None
    };

    let (mut ours, mut ours_plain, mut theirs) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        ours.push(push_ours(&phone, &sim, &data, "/sdcard/ours.bin").await?);
        ours_plain.push(push_ours(&phone_plain, &plain, &data, "/sdcard/ours.bin").await?);
        if let Some((server, file)) = &adb {
            let (server, a2) = (server.clone(), addr.clone());
            let path = file.path().to_str().unwrap_or_default().to_string();
            theirs.push(
                tokio::task::spawn_blocking(move || -> anyhow::Result<Duration> {
                    let t = Instant::now();
                    server.run_ok(&["-s", &a2, "push", &path, "/sdcard/adb.bin"])?;
                    Ok(t.elapsed())
                })
                .await??,
            );
            let n = sim
                .phone
                .lock()
                .unwrap()
                .read("/sdcard/adb.bin")
                .map(|d| d.len());
            anyhow::ensure!(n == Some(data.len()), "adb pushed {n:?} bytes");
            sim.phone.lock().unwrap().shell("rm /sdcard/adb.bin");
        }
    }

    // Pull and shell once each, ours then adb.
    phone
        .push(
            PushSource::Bytes(data.clone()),
            "/sdcard/back.bin",
            0o644,
            far,
            &mut |_, _| {},
        )
        .await?;
    let t = Instant::now();
    let back = phone.pull("/sdcard/back.bin", far).await?;
    let ours_pull = t.elapsed();
    anyhow::ensure!(back == data, "pull mismatch");
    let t = Instant::now();
    for _ in 0..shells {
        let o = phone.shell("true", far).await?;
        anyhow::ensure!(o.exit == Some(0));
    }
    let ours_shell = t.elapsed();

    let ours_push = median(&mut ours.clone());
    let plain_push = median(&mut ours_plain.clone());
    println!(
        "ours: push {:.1} MiB/s (median of {} ms), without delayed_ack {:.1} MiB/s (median of {} ms); pull {:.1} MiB/s ({:.2?}); {shells} x shell true {:.2?} ({:.3} ms each)",
        mib_s(data.len(), ours_push),
        list(&ours),
        mib_s(data.len(), plain_push),
        list(&ours_plain),
        mib_s(data.len(), ours_pull),
        ours_pull,
        ours_shell,
        ours_shell.as_secs_f64() * 1000.0 / shells as f64
    );

    let Some((server, _file)) = adb else {
        println!(
            "adb not installed: no comparison; load average {}",
            loadavg()
        );
        phones_rt.shutdown_background();
        return Ok(());
    };
    let a2 = addr.clone();
    let back_path = std::env::temp_dir().join(format!("adb_bench_{}.back", std::process::id()));
    let (adb_pull, adb_shell) =
        tokio::task::spawn_blocking(move || -> anyhow::Result<(Duration, Duration)> {
            let bp = back_path.to_str().unwrap_or_default().to_string();
            let t = Instant::now();
            server.run_ok(&["-s", &a2, "pull", "/sdcard/back.bin", &bp])?;
            let pull = t.elapsed();
            let _ = std::fs::remove_file(&back_path);
            let t = Instant::now();
            for _ in 0..shells {
                let o = server.run(&["-s", &a2, "shell", "true"])?;
                anyhow::ensure!(o.status.success(), "adb shell failed");
            }
            Ok((pull, t.elapsed()))
        })
        .await??;
    let adb_push = median(&mut theirs.clone());
    println!(
        "adb:  push {:.1} MiB/s (median of {} ms); pull {:.1} MiB/s ({:.2?}); {shells} x adb shell true {:.2?} ({:.3} ms each)",
        mib_s(data.len(), adb_push),
        list(&theirs),
        mib_s(data.len(), adb_pull),
        adb_pull,
        adb_shell,
        adb_shell.as_secs_f64() * 1000.0 / shells as f64
    );
    println!(
        "ratio: push throughput ours/adb = {:.2}x (without delayed_ack {:.2}x); pull throughput ours/adb = {:.2}x; shell total time adb/ours = {:.1}x; load average {}",
        adb_push.as_secs_f64() / ours_push.as_secs_f64(),
        adb_push.as_secs_f64() / plain_push.as_secs_f64(),
        adb_pull.as_secs_f64() / ours_pull.as_secs_f64(),
        adb_shell.as_secs_f64() / ours_shell.as_secs_f64(),
        loadavg()
    );
    phones_rt.shutdown_background();
    Ok(())
}
