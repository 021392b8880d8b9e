//! Throughput and latency of our ADB host against Debian's `adb`, both talking to the same
//! simulated phone on loopback:
//!
//! `cargo run --release -p phonefarm-phonesim --example adb_bench -- [MiB] [shells]`
//!
//! Ours runs in-process over one TCP connection (as the agent does); adb runs as the CLI
//! client through its own isolated server, as an operator would use it.

use std::time::{Duration, Instant};

use bytes::Bytes;
use phonefarm_agent::adb::auth::{AdbKey, KeyRing};
use phonefarm_agent::phone::{PhoneHandle, PhoneOptions, PushSource};
use phonefarm_phonesim::real_adb::{AdbServer, adb_available};
use phonefarm_phonesim::{SimConfig, spawn};

fn mib_s(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / (1024.0 * 1024.0) / d.as_secs_f64()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mib: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(100);
    let shells: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(1000);
    let delayed = std::env::var_os("BENCH_DELAYED_ACK").is_some();
    let mut cfg = SimConfig::default();
    if delayed {
        cfg = cfg.with_feature("delayed_ack");
    }
    let sim = spawn(cfg).await?;
    let addr = sim.address();
    let data: Vec<u8> = (0..mib * 1024 * 1024)
        .map(|i| (i * 31 % 251) as u8)
        .collect();
    println!(
        "simulator at {addr}; payload {mib} MiB; {shells} sequential shells; delayed_ack={delayed}"
    );

    // Ours.
    let key = AdbKey::generate()?;
    let phone = PhoneHandle::connect_tcp(&addr, PhoneOptions::new(KeyRing::new(vec![key]))).await?;
    let far = tokio::time::Instant::now() + Duration::from_secs(600);
    phone.wait_online(far).await?;
    let t = Instant::now();
    phone
        .push(
            PushSource::Bytes(Bytes::from(data.clone())),
            "/sdcard/ours.bin",
            0o644,
            far,
            &mut |_, _| {},
        )
        .await?;
    let ours_push = t.elapsed();
    anyhow::ensure!(
        sim.phone
            .lock()
            .unwrap()
            .read("/sdcard/ours.bin")
            .as_deref()
            == Some(&data[..])
    );
    let t = Instant::now();
    let back = phone.pull("/sdcard/ours.bin", far).await?;
    let ours_pull = t.elapsed();
    anyhow::ensure!(back == data, "pull mismatch");
    let t = Instant::now();
    for _ in 0..shells {
        let o = phone.shell("true", far).await?;
        anyhow::ensure!(o.exit == Some(0));
    }
    let ours_shell = t.elapsed();

    println!(
        "ours: push {:.1} MiB/s ({:.2?}), pull {:.1} MiB/s ({:.2?}), {shells} x shell true {:.2?} ({:.3} ms each)",
        mib_s(data.len(), ours_push),
        ours_push,
        mib_s(data.len(), ours_pull),
        ours_pull,
        ours_shell,
        ours_shell.as_secs_f64() * 1000.0 / shells as f64
    );

    if !adb_available() {
        println!("adb not installed: no comparison");
        return Ok(());
    }
    let file = tempfile::NamedTempFile::new()?;
    std::fs::write(file.path(), &data)?;
    let path = file.path().to_str().unwrap_or_default().to_string();
    let a2 = addr.clone();
    let back_path = format!("{path}.back");
    let (adb_push, adb_pull, adb_shell) =
        tokio::task::spawn_blocking(move || -> anyhow::Result<(Duration, Duration, Duration)> {
            let adb = AdbServer::start()?;
            adb.connect(&a2, Duration::from_secs(20))?;
            let t = Instant::now();
            adb.run_ok(&["-s", &a2, "push", &path, "/sdcard/adb.bin"])?;
            let push = t.elapsed();
            let t = Instant::now();
            adb.run_ok(&["-s", &a2, "pull", "/sdcard/adb.bin", &back_path])?;
            let pull = t.elapsed();
            let _ = std::fs::remove_file(&back_path);
            let t = Instant::now();
            for _ in 0..shells {
                let o = adb.run(&["-s", &a2, "shell", "true"])?;
                anyhow::ensure!(o.status.success(), "adb shell failed");
            }
            Ok((push, pull, t.elapsed()))
        })
        .await??;
    anyhow::ensure!(
        sim.phone
            .lock()
            .unwrap()
            .read("/sdcard/adb.bin")
            .map(|d| d.len())
            == Some(data.len())
    );
    println!(
        "adb:  push {:.1} MiB/s ({:.2?}), pull {:.1} MiB/s ({:.2?}), {shells} x adb shell true {:.2?} ({:.3} ms each)",
        mib_s(data.len(), adb_push),
        adb_push,
        mib_s(data.len(), adb_pull),
        adb_pull,
        adb_shell,
        adb_shell.as_secs_f64() * 1000.0 / shells as f64
    );
    println!(
        "ratio: push throughput ours/adb = {:.2}x; pull throughput ours/adb = {:.2}x; shell total time adb/ours = {:.1}x",
        adb_push.as_secs_f64() / ours_push.as_secs_f64(),
        adb_pull.as_secs_f64() / ours_pull.as_secs_f64(),
        adb_shell.as_secs_f64() / ours_shell.as_secs_f64()
    );
    Ok(())
}
