//! Figures the benches print: percentiles of latencies, one summary line each, and the NATS
//! request round trip they are compared with.

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

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn percentiles_by_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), 51.0);
        assert_eq!(percentile(&v, 0.99), 99.0);
        assert_eq!(percentile(&v, 1.0), 100.0);
        assert!(percentile(&[], 0.5).is_nan());
    }
}
