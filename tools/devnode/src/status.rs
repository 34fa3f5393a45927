//! What the dev node reports for a pod, computed from what it knows of each
//! container. Pure: the pod worker feeds it records and a clock reading.

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// One container as the dev node runs it.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerRecord {
    pub name: String,
    pub image: String,
    pub state: RunState,
    pub last_terminated: Option<Terminated>,
    pub restart_count: i32,
    pub ready: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RunState {
    Waiting {
        reason: String,
        message: Option<String>,
    },
    Running {
        started_at: DateTime<Utc>,
    },
    Terminated(Terminated),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Terminated {
    pub exit_code: i32,
    pub signal: Option<i32>,
    pub reason: String,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: DateTime<Utc>,
}

impl ContainerRecord {
    pub fn new(name: &str, image: &str) -> Self {
        Self {
            name: name.into(),
            image: image.into(),
            state: RunState::Waiting {
                reason: "ContainerCreating".into(),
                message: None,
            },
            last_terminated: None,
            restart_count: 0,
            ready: false,
        }
    }
}

/// chrono time (what the dev node keeps) as the API's timestamp type.
pub fn to_time(t: DateTime<Utc>) -> Time {
    Time(k8s_openapi::jiff::Timestamp::from_microsecond(t.timestamp_micros()).unwrap_or_default())
}

/// The API's timestamp type as chrono time.
pub fn from_time(t: &Time) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(t.0.as_microsecond()).unwrap_or_default()
}

/// The pod's phase from its containers, as the kubelet derives it.
pub fn phase(containers: &[ContainerRecord], restart_policy: &str) -> &'static str {
    let running = containers
        .iter()
        .filter(|c| matches!(c.state, RunState::Running { .. }))
        .count();
    let terminated: Vec<&Terminated> = containers
        .iter()
        .filter_map(|c| match &c.state {
            RunState::Terminated(t) => Some(t),
            _ => None,
        })
        .collect();
    let ever_started = |c: &ContainerRecord| {
        !matches!(c.state, RunState::Waiting { .. }) || c.last_terminated.is_some()
    };
    if containers.is_empty() || !containers.iter().all(ever_started) {
        return "Pending";
    }
    if running > 0 {
        return "Running";
    }
    if terminated.len() == containers.len() {
        let all_ok = terminated.iter().all(|t| t.exit_code == 0);
        return match (restart_policy, all_ok) {
            ("Always", _) => "Running",
            ("OnFailure", false) => "Running",
            (_, true) => "Succeeded",
            (_, false) => "Failed",
        };
    }
    // Some waiting to restart after having run: the pod is still running.
    "Running"
}

/// The whole status to report. `previous` supplies condition transition
/// times, which only move when a condition's value changes.
pub fn pod_status(
    containers: &[ContainerRecord],
    restart_policy: &str,
    pod_ip: &str,
    start_time: DateTime<Utc>,
    previous: Option<&PodStatus>,
    now: DateTime<Utc>,
) -> PodStatus {
    let all_ready = !containers.is_empty() && containers.iter().all(|c| c.ready);
    let ready = if all_ready { "True" } else { "False" };
    let condition = |type_: &str, status: &str| {
        let last = previous
            .and_then(|p| p.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == type_))
            .filter(|c| c.status == status)
            .and_then(|c| c.last_transition_time.clone());
        PodCondition {
            type_: type_.into(),
            status: status.into(),
            last_transition_time: Some(last.unwrap_or(to_time(now))),
            reason: (status == "False" && (type_ == "Ready" || type_ == "ContainersReady"))
                .then(|| "ContainersNotReady".to_string()),
            ..Default::default()
        }
    };
    PodStatus {
        phase: Some(phase(containers, restart_policy).into()),
        conditions: Some(vec![
            condition("Initialized", "True"),
            condition("Ready", ready),
            condition("ContainersReady", ready),
            condition("PodScheduled", "True"),
        ]),
        host_ip: Some("127.0.0.1".into()),
        pod_ip: Some(pod_ip.into()),
        pod_ips: Some(vec![PodIP { ip: pod_ip.into() }]),
        start_time: Some(to_time(start_time)),
        qos_class: previous.and_then(|p| p.qos_class.clone()),
        container_statuses: Some(containers.iter().map(container_status).collect()),
        ..Default::default()
    }
}

fn container_status(c: &ContainerRecord) -> ContainerStatus {
    ContainerStatus {
        name: c.name.clone(),
        image: c.image.clone(),
        image_id: format!("siesta-devnode://{}", c.image),
        container_id: Some(format!("siesta-devnode://{}", c.name)),
        ready: c.ready,
        started: Some(matches!(c.state, RunState::Running { .. })),
        restart_count: c.restart_count,
        state: Some(state(&c.state)),
        last_state: c.last_terminated.as_ref().map(|t| ContainerState {
            terminated: Some(terminated(t)),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn state(s: &RunState) -> ContainerState {
    match s {
        RunState::Waiting { reason, message } => ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(reason.clone()),
                message: message.clone(),
            }),
            ..Default::default()
        },
        RunState::Running { started_at } => ContainerState {
            running: Some(ContainerStateRunning {
                started_at: Some(to_time(*started_at)),
            }),
            ..Default::default()
        },
        RunState::Terminated(t) => ContainerState {
            terminated: Some(terminated(t)),
            ..Default::default()
        },
    }
}

fn terminated(t: &Terminated) -> ContainerStateTerminated {
    ContainerStateTerminated {
        exit_code: t.exit_code,
        signal: t.signal,
        reason: Some(t.reason.clone()),
        started_at: t.started_at.map(to_time),
        finished_at: Some(to_time(t.finished_at)),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + s, 0).unwrap()
    }

    fn running(ready: bool) -> ContainerRecord {
        ContainerRecord {
            state: RunState::Running { started_at: t(1) },
            ready,
            ..ContainerRecord::new("c", "img")
        }
    }

    fn exited(code: i32) -> ContainerRecord {
        ContainerRecord {
            state: RunState::Terminated(Terminated {
                exit_code: code,
                signal: None,
                reason: if code == 0 {
                    "Completed".into()
                } else {
                    "Error".into()
                },
                started_at: Some(t(1)),
                finished_at: t(2),
            }),
            ..ContainerRecord::new("c", "img")
        }
    }

    #[test]
    fn phases() {
        assert_eq!(
            phase(&[ContainerRecord::new("c", "i")], "Always"),
            "Pending"
        );
        assert_eq!(phase(&[running(false)], "Always"), "Running");
        assert_eq!(phase(&[exited(0)], "Never"), "Succeeded");
        assert_eq!(phase(&[exited(1)], "Never"), "Failed");
        assert_eq!(phase(&[exited(1)], "OnFailure"), "Running");
        let mut restarting = ContainerRecord::new("c", "i");
        restarting.last_terminated = Some(match exited(1).state {
            RunState::Terminated(t) => t,
            _ => unreachable!(),
        });
        restarting.state = RunState::Waiting {
            reason: "CrashLoopBackOff".into(),
            message: None,
        };
        assert_eq!(phase(&[restarting], "Always"), "Running");
    }

    #[test]
    fn ready_condition_follows_containers_and_keeps_transition_time() {
        let s1 = pod_status(&[running(false)], "Always", "127.10.0.1", t(0), None, t(5));
        let ready = |s: &PodStatus| {
            s.conditions
                .as_ref()
                .unwrap()
                .iter()
                .find(|c| c.type_ == "Ready")
                .cloned()
                .unwrap()
        };
        assert_eq!(ready(&s1).status, "False");
        let s2 = pod_status(
            &[running(true)],
            "Always",
            "127.10.0.1",
            t(0),
            Some(&s1),
            t(9),
        );
        assert_eq!(ready(&s2).status, "True");
        assert_eq!(ready(&s2).last_transition_time, Some(to_time(t(9))));
        let s3 = pod_status(
            &[running(true)],
            "Always",
            "127.10.0.1",
            t(0),
            Some(&s2),
            t(20),
        );
        assert_eq!(
            ready(&s3).last_transition_time,
            Some(to_time(t(9))),
            "unchanged value keeps its time"
        );
        assert_eq!(s3.pod_ip.as_deref(), Some("127.10.0.1"));
        assert!(s3.container_statuses.unwrap()[0].ready);
    }
}
