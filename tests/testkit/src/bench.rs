//! Figures the benches print: percentiles of latencies, one summary line each, the NATS
//! request round trip they are compared with, and CPU time (the host's and a process's) read
//! from `/proc`.

use std::time::Instant;

use futures::StreamExt as _;

/// The `p` quantile (0..=1) of `sorted` (nearest rank); NaN when empty.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Prints `name n= p50= p99= max=` for latencies in ms and returns (p50, p99).
pub fn summary(name: &str, mut ms: Vec<f64>) -> (f64, f64) {
    ms.sort_by(|a, b| a.total_cmp(b));
    let (p50, p99) = (percentile(&ms, 0.5), percentile(&ms, 0.99));
    println!(
        "{name:<46} n={:<5} p50={p50:>8.2} ms  p99={p99:>8.2} ms  max={:>8.2} ms",
        ms.len(),
        ms.last().copied().unwrap_or(f64::NAN)
    );
    (p50, p99)
}

/// `n` plain request round trips (ms) through the server `client` is connected to, against a
/// responder on the same connection.
pub async fn nats_request_rtt(
    client: &async_nats::Client,
    n: usize,
) -> Result<Vec<f64>, async_nats::Error> {
    let mut sub = client.subscribe("bench.echo").await?;
    let responder_client = client.clone();
    let responder = tokio::spawn(async move {
        while let Some(m) = sub.next().await {
            if let Some(reply) = m.reply {
                let _ = responder_client.publish(reply, m.payload).await;
            }
        }
    });
    let mut rtt = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let answered = client.request("bench.echo", "ping".into()).await;
        if let Err(e) = answered {
            responder.abort();
            return Err(e.into());
        }
        rtt.push(t.elapsed().as_secs_f64() * 1e3);
    }
    responder.abort();
    Ok(rtt)
}

/// Clock ticks per second of `/proc`'s CPU times (`sysconf(_SC_CLK_TCK)`, 100 on Linux).
fn ticks_per_s() -> f64 {
    static HZ: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *HZ.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// CPU seconds the whole host has been busy since boot (`/proc/stat`: every state but idle
/// and iowait), summed over its cores; None if it cannot be read.
pub fn host_busy_s() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    host_busy_ticks(stat.lines().next()?).map(|t| t / ticks_per_s())
}

/// Busy ticks of the `cpu` line of `/proc/stat`: user nice system idle iowait irq softirq
/// steal, all but idle and iowait (guest time is inside user already).
fn host_busy_ticks(cpu_line: &str) -> Option<f64> {
    let mut fields = cpu_line.split_whitespace();
    if fields.next()? != "cpu" {
        return None;
    }
    let ticks: Vec<f64> = fields
        .take(8)
        .map(|v| v.parse().ok())
        .collect::<Option<_>>()?;
    if ticks.len() < 5 {
        return None;
    }
    Some(ticks.iter().sum::<f64>() - ticks[3] - ticks[4])
}

/// CPU seconds (user + system) process `pid` has used so far, every thread's, exited ones
/// included (`/proc/<pid>/stat`); None if it cannot be read (the process is gone).
pub fn process_cpu_s(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    process_ticks(&stat).map(|t| t / ticks_per_s())
}

/// utime + stime of a `/proc/<pid>/stat` line: the 12th and 13th fields after the command
/// name, which is in parentheses and may itself hold spaces and parentheses.
fn process_ticks(stat: &str) -> Option<f64> {
    let (_, rest) = stat.rsplit_once(')')?;
    let mut f = rest.split_whitespace().skip(11);
    let utime: f64 = f.next()?.parse().ok()?;
    let stime: f64 = f.next()?.parse().ok()?;
    Some(utime + stime)
}

/// The host CPU a burst of `n` processes used, per process (ms), and what a burst that lands
/// within `target_ms` on `cores` cores could use at most: `cores × target_ms / n`. A burst
/// whose work per process exceeds that budget cannot end within the target, whatever the
/// order in which that work is done.
pub fn cpu_budget_line(host_busy_s: f64, n: usize, cores: usize, target_ms: f64) -> String {
    let n = n.max(1) as f64;
    let used = host_busy_s * 1e3 / n;
    let budget = cores as f64 * target_ms / n;
    format!(
        "host CPU per process in the burst: {used:.2} ms; a burst of {n} ending within {target_ms} ms on {cores} cores has at most {budget:.2} ms ({:.1}x over)",
        used / budget
    )
}

#[cfg(test)]
mod tests {
    use super::{cpu_budget_line, host_busy_ticks, percentile, process_ticks};

    #[test]
    fn host_busy_leaves_out_idle_and_iowait() {
        // user nice system idle iowait irq softirq steal guest guest_nice
        let line = "cpu  100 5 50 1000 40 3 2 1 7 0";
        assert_eq!(host_busy_ticks(line), Some(161.0));
        assert_eq!(host_busy_ticks("cpu0 1 2 3 4 5 6 7 8"), None);
        assert_eq!(host_busy_ticks("cpu  1 x 3 4 5"), None);
        assert_eq!(host_busy_ticks("cpu  1 2"), None);
    }

    #[test]
    fn process_ticks_read_past_a_command_with_spaces_and_parens() {
        let stat = "42 (tokio (rt) 1) S 1 42 42 0 -1 4194560 10 0 0 0 250 75 0 0 20 0 9";
        assert_eq!(process_ticks(stat), Some(325.0));
        assert_eq!(process_ticks("42 (short) S 1"), None);
        assert_eq!(process_ticks("no parens"), None);
        assert!(super::process_cpu_s(std::process::id()).is_some());
        assert!(super::host_busy_s().is_some_and(|s| s > 0.0));
    }

    #[test]
    fn the_budget_is_cores_times_target_over_n() {
        // 0.36 CPU-seconds for 100 processes: 3.6 ms each against 2 × 50 / 100 = 1 ms.
        let line = cpu_budget_line(0.36, 100, 2, 50.0);
        assert!(line.contains("3.60 ms"), "{line}");
        assert!(line.contains("at most 1.00 ms"), "{line}");
        assert!(line.contains("3.6x over"), "{line}");
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), 51.0);
        assert_eq!(percentile(&v, 0.99), 99.0);
        assert_eq!(percentile(&v, 1.0), 100.0);
        assert!(percentile(&[], 0.5).is_nan());
    }
}
