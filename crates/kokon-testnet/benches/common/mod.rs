//! Load generation shared by the benchmarks.

use std::time::{Duration, Instant};

use serde_json::json;

pub struct Stats {
    pub rps: f64,
    pub p50: Duration,
    pub p99: Duration,
}

pub async fn load(base: &str, model: &str, requests: usize, concurrency: usize) -> Stats {
    let client = reqwest::Client::new();
    let url = format!("{base}/chat/completions");
    let body =
        json!({"model": model, "messages": [{"role": "user", "content": "one two three four"}]});
    // Warm up connections and caches.
    for _ in 0..20 {
        client
            .post(&url)
            .json(&body)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
    }
    let per_worker = requests / concurrency;
    let start = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, url, body) = (client.clone(), url.clone(), body.clone());
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(per_worker);
                for _ in 0..per_worker {
                    let t = Instant::now();
                    let r = client.post(&url).json(&body).send().await.unwrap();
                    let status = r.status();
                    let answer = r.bytes().await.unwrap();
                    assert!(
                        status.is_success(),
                        "{status}: {}",
                        String::from_utf8_lossy(&answer)
                    );
                    lat.push(t.elapsed());
                }
                lat
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let total = start.elapsed();
    all.sort();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
    Stats {
        rps: all.len() as f64 / total.as_secs_f64(),
        p50: pct(0.50),
        p99: pct(0.99),
    }
}

pub fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}
