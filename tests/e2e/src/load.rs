//! Steady client load for the end-to-end tests: N clients, each sending one
//! GET after another on a new connection (as curl does), counting what came
//! back. A request is a failure unless it is answered 200.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Mutex;
use tokio::task::JoinHandle;

use siesta_testkit::http_get;

/// Counts of a load run.
#[derive(Clone, Debug, Default)]
pub struct Counts {
    pub sent: u64,
    pub ok: u64,
    pub failed: u64,
    /// The first few failures: when (since start), status or error, body.
    pub failures: Vec<String>,
    /// Latency of each answered request, in the order they ended.
    pub latencies: Vec<Duration>,
}

impl Counts {
    /// `sent / 2xx / failed` for a closing note.
    pub fn summary(&self) -> String {
        format!(
            "{} sent / {} 2xx / {} failed",
            self.sent, self.ok, self.failed
        )
    }

    /// The median of the answered requests' latencies.
    pub fn median(&self) -> Option<Duration> {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        sorted.get(sorted.len() / 2).copied()
    }
}

/// A running load; [`Load::stop`] ends it and returns the counts.
pub struct Load {
    stop: Arc<AtomicBool>,
    counts: Arc<Mutex<Counts>>,
    clients: Vec<JoinHandle<()>>,
}

impl Load {
    /// Starts `clients` loops of `GET path` with `Host: host` against `addr`.
    pub fn start(addr: &str, host: &str, path: &str, clients: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(Mutex::new(Counts::default()));
        let start = Instant::now();
        let clients = (0..clients)
            .map(|_| {
                let (stop, counts) = (stop.clone(), counts.clone());
                let (addr, host, path) = (addr.to_string(), host.to_string(), path.to_string());
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let began = Instant::now();
                        let result = tokio::time::timeout(
                            Duration::from_secs(60),
                            http_get(&addr, &path, &host),
                        )
                        .await;
                        let mut c = counts.lock().await;
                        c.sent += 1;
                        match result {
                            Ok(Ok((200, _))) => {
                                c.ok += 1;
                                c.latencies.push(began.elapsed());
                            }
                            other => {
                                c.failed += 1;
                                if c.failures.len() < 10 {
                                    let what = match other {
                                        Ok(Ok((status, body))) => {
                                            format!("{status} {}", body.trim())
                                        }
                                        Ok(Err(e)) => format!("error: {e}"),
                                        Err(_) => "no answer within 60 s".to_string(),
                                    };
                                    c.failures.push(format!("at {:?}: {what}", start.elapsed()));
                                }
                            }
                        }
                    }
                })
            })
            .collect();
        Self {
            stop,
            counts,
            clients,
        }
    }

    /// The counts so far, while the load goes on.
    pub async fn snapshot(&self) -> Counts {
        self.counts.lock().await.clone()
    }

    /// Lets each client finish its request in flight, then returns the counts.
    pub async fn stop(self) -> Counts {
        self.stop.store(true, Ordering::Relaxed);
        for client in self.clients {
            let _ = client.await;
        }
        self.counts.lock().await.clone()
    }
}
