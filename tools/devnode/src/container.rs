//! One container run as a local process: start, probe, restart with
//! back-off, and stop gracefully (SIGTERM to its process group, SIGKILL when
//! the grace period runs out). Each process gets its own process group, so a
//! shell that forks is stopped whole.

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tokio::sync::{Notify, watch};

use crate::backoff;
use crate::probe::{ProbePlan, Readiness, run_check};
use crate::status::{ContainerRecord, RunState, Terminated};

/// Probe cadence before a container's first success. The kubelet waits a
/// whole period between tries; the dev node tries often until the process
/// listens, so cold-start timings measure Siesta, not a probe period.
const FIRST_READY_PROBE_INTERVAL: Duration = Duration::from_millis(25);

/// What a pod worker shares with its container runners.
#[derive(Debug, Default)]
pub struct PodState {
    pub containers: Mutex<Vec<ContainerRecord>>,
    pub changed: Notify,
}

impl PodState {
    pub fn update(&self, index: usize, f: impl FnOnce(&mut ContainerRecord)) {
        if let Ok(mut records) = self.containers.lock()
            && let Some(record) = records.get_mut(index)
        {
            f(record);
        }
        self.changed.notify_one();
    }

    pub fn snapshot(&self) -> Vec<ContainerRecord> {
        self.containers
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }
}

/// Everything needed to start one container's process.
#[derive(Debug, Clone)]
pub struct Launch {
    pub pod: String,
    pub index: usize,
    pub name: String,
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub workdir: PathBuf,
    pub log_path: PathBuf,
    pub pgid_path: PathBuf,
    pub readiness: Option<ProbePlan>,
    pub restart_policy: String,
}

/// A stop request: how long the process gets between SIGTERM and SIGKILL.
pub type StopSignal = watch::Receiver<Option<Duration>>;

/// Runs the container until it is stopped or, under its restart policy, it
/// is done. Returns when no process of it is left.
pub async fn run(launch: Launch, state: Arc<PodState>, mut stop: StopSignal) {
    let mut delay = None;
    loop {
        if stop.borrow().is_some() {
            return;
        }
        let mut child = match spawn(&launch) {
            Ok(child) => child,
            Err(e) => {
                tracing::warn!(pod = %launch.pod, container = %launch.name, "start failed: {e}");
                state.update(launch.index, |r| {
                    r.state = RunState::Waiting {
                        reason: "RunContainerError".into(),
                        message: Some(e.clone()),
                    };
                });
                let wait = backoff::next_delay(delay, Duration::ZERO);
                delay = Some(wait);
                if stopped_during(&mut stop, wait).await {
                    return;
                }
                continue;
            }
        };
        let pid = child.id().unwrap_or(0);
        let _ = std::fs::write(&launch.pgid_path, pid.to_string());
        let started_at = Utc::now();
        let started = Instant::now();
        tracing::info!(pod = %launch.pod, container = %launch.name, pid, argv = ?launch.argv, "started");
        state.update(launch.index, |r| {
            r.state = RunState::Running { started_at };
            r.ready = launch.readiness.is_none();
        });

        let outcome = tokio::select! {
            status = child.wait() => Outcome::Exited(status),
            _ = probe_forever(&launch, &state) => Outcome::Exited(child.wait().await),
            grace = wait_for_stop(&mut stop) => Outcome::Stopped(terminate(&mut child, pid, grace).await),
        };
        let _ = std::fs::remove_file(&launch.pgid_path);
        let (status, stopping) = match outcome {
            Outcome::Exited(s) => (s, false),
            Outcome::Stopped(s) => (s, true),
        };
        let terminated = terminated_from(status, started_at);
        tracing::info!(pod = %launch.pod, container = %launch.name, exit_code = terminated.exit_code, reason = %terminated.reason, "exited");
        let restart = !stopping && should_restart(&launch.restart_policy, terminated.exit_code);
        if !restart {
            state.update(launch.index, |r| {
                r.ready = false;
                r.state = RunState::Terminated(terminated);
            });
            return;
        }
        let wait = backoff::next_delay(delay, started.elapsed());
        delay = Some(wait);
        state.update(launch.index, |r| {
            r.ready = false;
            r.restart_count += 1;
            r.last_terminated = Some(terminated);
            r.state = RunState::Waiting {
                reason: "CrashLoopBackOff".into(),
                message: Some(format!(
                    "back-off {}s restarting failed container",
                    wait.as_secs()
                )),
            };
        });
        if stopped_during(&mut stop, wait).await {
            return;
        }
    }
}

enum Outcome {
    Exited(std::io::Result<ExitStatus>),
    Stopped(std::io::Result<ExitStatus>),
}

pub fn should_restart(policy: &str, exit_code: i32) -> bool {
    match policy {
        "Never" => false,
        "OnFailure" => exit_code != 0,
        _ => true,
    }
}

fn spawn(launch: &Launch) -> Result<Child, String> {
    let (program, args) = launch.argv.split_first().ok_or("empty command")?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&launch.log_path)
        .map_err(|e| format!("opening log {}: {e}", launch.log_path.display()))?;
    let log_err = log.try_clone().map_err(|e| format!("log handle: {e}"))?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_clear()
        .env(
            "PATH",
            std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into()),
        )
        .env("HOME", &launch.workdir)
        .envs(launch.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .current_dir(&launch.workdir)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .process_group(0)
        .kill_on_drop(false);
    cmd.spawn()
        .map_err(|e| format!("starting {program:?}: {e}"))
}

async fn probe_forever(launch: &Launch, state: &PodState) {
    let Some(plan) = &launch.readiness else {
        return std::future::pending().await;
    };
    tokio::time::sleep(plan.initial_delay).await;
    let mut readiness = Readiness::default();
    let mut ever_ready = false;
    loop {
        let result = run_check(&plan.check, plan.timeout).await;
        if readiness.observe(result.is_ok(), plan) {
            let ready = readiness.ready;
            ever_ready |= ready;
            tracing::info!(pod = %launch.pod, container = %launch.name, ready, detail = ?result.err(), "readiness changed");
            state.update(launch.index, |r| r.ready = ready);
        }
        let next = if ever_ready {
            plan.period
        } else {
            FIRST_READY_PROBE_INTERVAL.min(plan.period)
        };
        tokio::time::sleep(next).await;
    }
}

async fn wait_for_stop(stop: &mut StopSignal) -> Duration {
    loop {
        if let Some(grace) = *stop.borrow() {
            return grace;
        }
        if stop.changed().await.is_err() {
            // The pod worker is gone: nobody will ask again, so stop now.
            return Duration::ZERO;
        }
    }
}

/// True when a stop arrived before `wait` passed.
async fn stopped_during(stop: &mut StopSignal, wait: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(wait) => false,
        _ = wait_for_stop(stop) => true,
    }
}

async fn terminate(child: &mut Child, pid: u32, grace: Duration) -> std::io::Result<ExitStatus> {
    signal_group(pid, Signal::SIGTERM);
    match tokio::time::timeout(grace, child.wait()).await {
        Ok(status) => {
            // The leader exited; anything it left in its group goes too.
            signal_group(pid, Signal::SIGKILL);
            status
        }
        Err(_) => {
            tracing::info!(pid, "grace period over; sending SIGKILL");
            signal_group(pid, Signal::SIGKILL);
            child.wait().await
        }
    }
}

pub fn signal_group(pgid: u32, signal: Signal) {
    if let Ok(pgid) = i32::try_from(pgid)
        && pgid > 1
    {
        let _ = killpg(Pid::from_raw(pgid), signal);
    }
}

fn terminated_from(
    status: std::io::Result<ExitStatus>,
    started_at: chrono::DateTime<Utc>,
) -> Terminated {
    let (exit_code, signal) = match &status {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(code), _) => (code, None),
            (None, Some(sig)) => (128 + sig, Some(sig)),
            (None, None) => (-1, None),
        },
        Err(_) => (-1, None),
    };
    let reason = match (exit_code, signal) {
        (0, _) => "Completed",
        (_, Some(9)) => "OOMKilled-or-SIGKILL",
        _ => "Error",
    };
    Terminated {
        exit_code,
        signal,
        reason: reason.into(),
        started_at: Some(started_at),
        finished_at: Utc::now(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn launch(dir: &std::path::Path, argv: &[&str], policy: &str) -> Launch {
        Launch {
            pod: "ns/p".into(),
            index: 0,
            name: "c".into(),
            argv: argv.iter().map(|s| s.to_string()).collect(),
            env: vec![("GREETING".into(), "hi".into())],
            workdir: dir.to_path_buf(),
            log_path: dir.join("c.log"),
            pgid_path: dir.join("c.pgid"),
            readiness: None,
            restart_policy: policy.into(),
        }
    }

    fn state() -> Arc<PodState> {
        Arc::new(PodState {
            containers: Mutex::new(vec![ContainerRecord::new("c", "img")]),
            changed: Notify::new(),
        })
    }

    fn tempdir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "devnode-test-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn rand_suffix() -> u128 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    }

    #[tokio::test]
    async fn a_completed_container_under_never_is_terminated_with_its_env_and_log() {
        let dir = tempdir();
        let st = state();
        let (_tx, rx) = watch::channel(None);
        run(
            launch(&dir, &["/bin/sh", "-c", "echo $GREETING; exit 3"], "Never"),
            st.clone(),
            rx,
        )
        .await;
        let rec = &st.snapshot()[0];
        match &rec.state {
            RunState::Terminated(t) => assert_eq!(t.exit_code, 3),
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(std::fs::read_to_string(dir.join("c.log")).unwrap(), "hi\n");
        assert!(!dir.join("c.pgid").exists());
    }

    #[tokio::test]
    async fn a_crashing_container_is_restarted_and_counted() {
        let dir = tempdir();
        let st = state();
        let (tx, rx) = watch::channel(None);
        let task = tokio::spawn(run(
            launch(&dir, &["/bin/sh", "-c", "exit 1"], "Always"),
            st.clone(),
            rx,
        ));
        let deadline = Instant::now() + Duration::from_secs(10);
        while st.snapshot()[0].restart_count < 2 {
            assert!(Instant::now() < deadline, "not restarted twice in time");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tx.send(Some(Duration::from_secs(1))).unwrap();
        task.await.unwrap();
        assert_eq!(
            st.snapshot()[0].last_terminated.as_ref().unwrap().exit_code,
            1
        );
    }

    #[tokio::test]
    async fn stop_sends_sigterm_then_sigkill_after_grace() {
        let dir = tempdir();
        let st = state();
        let (tx, rx) = watch::channel(None);
        // Ignores SIGTERM, so only SIGKILL ends it.
        let task = tokio::spawn(run(
            launch(
                &dir,
                &[
                    "/bin/sh",
                    "-c",
                    "trap '' TERM; : > trapped; while :; do sleep 0.05; done",
                ],
                "Always",
            ),
            st.clone(),
            rx,
        ));
        // Signal only once the shell has set its trap (it says so with a
        // file), not after a guessed delay: on a busy machine it may not have.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !dir.join("trapped").exists() {
            assert!(Instant::now() < deadline, "the shell never set its trap");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let t0 = Instant::now();
        tx.send(Some(Duration::from_millis(500))).unwrap();
        task.await.unwrap();
        let took = t0.elapsed();
        assert!(
            took >= Duration::from_millis(450),
            "killed before the grace period: {took:?}"
        );
        match &st.snapshot()[0].state {
            RunState::Terminated(t) => assert_eq!(t.signal, Some(9)),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn restart_policies() {
        assert!(should_restart("Always", 0));
        assert!(!should_restart("OnFailure", 0));
        assert!(should_restart("OnFailure", 2));
        assert!(!should_restart("Never", 2));
    }
}
