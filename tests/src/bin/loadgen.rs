//! `loadgen`: sends GET requests at a fixed rate for a fixed time (open loop: a slow reply
//! does not slow the sending, and latency counts from when a request was due), then prints
//! one JSON object with the latency percentiles. Bounded by construction: rate × duration
//! requests, each with a timeout.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use clap::Parser;
use tokio::sync::Mutex;

/// Open-loop HTTP GET load at a fixed rate; prints JSON.
#[derive(Debug, Parser)]
struct Args {
    /// URL to GET (loopback only).
    #[arg(long)]
    url: String,
    /// Requests per second.
    #[arg(long, default_value_t = 500)]
    rate: u32,
    /// Seconds to send for.
    #[arg(long, default_value_t = 10)]
    seconds: u32,
    /// HTTP Basic credentials, `user:secret`.
    #[arg(long, env = "LOADGEN_BASIC")]
    basic: Option<String>,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let url = reqwest::Url::parse(&args.url).context("--url")?;
    let host_ok = matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
    anyhow::ensure!(host_ok, "loadgen only targets loopback addresses");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .pool_max_idle_per_host(256)
        .build()?;
    let auth = args
        .basic
        .as_ref()
        .map(|b| format!("Basic {}", STANDARD.encode(b)));
    let total = u64::from(args.rate) * u64::from(args.seconds);
    let period = Duration::from_secs_f64(1.0 / f64::from(args.rate));
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(total as usize)));
    let errors = Arc::new(Mutex::new(0u64));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(total as usize);
    for n in 0..total {
        let due = start + period.mul_f64(n as f64);
        tokio::time::sleep_until(due.into()).await;
        let (client, url, auth) = (client.clone(), url.clone(), auth.clone());
        let (latencies, errors) = (latencies.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let mut req = client.get(url);
            if let Some(a) = auth {
                req = req.header("authorization", a);
            }
            let ok = match req.send().await {
                Ok(resp) => {
                    let good = resp.status().is_success();
                    let _ = resp.bytes().await;
                    good
                }
                Err(_) => false,
            };
            let ms = due.elapsed().as_secs_f64() * 1000.0;
            if ok {
                latencies.lock().await.push(ms);
            } else {
                *errors.lock().await += 1;
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let mut lat = latencies.lock().await.clone();
    lat.sort_by(f64::total_cmp);
    let out = serde_json::json!({
        "url_path": url.path(),
        "target_rate": args.rate,
        "requests": total,
        "ok": lat.len(),
        "errors": *errors.lock().await,
        "achieved_rate": (total as f64 / elapsed * 10.0).round() / 10.0,
        "p50_ms": (percentile(&lat, 50.0) * 1000.0).round() / 1000.0,
        "p90_ms": (percentile(&lat, 90.0) * 1000.0).round() / 1000.0,
        "p99_ms": (percentile(&lat, 99.0) * 1000.0).round() / 1000.0,
        "max_ms": (lat.last().copied().unwrap_or(f64::NAN) * 1000.0).round() / 1000.0,
    });
    println!("{out}");
    Ok(())
}
