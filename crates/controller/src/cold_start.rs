//! The record of a cold start, from the activator's report to
//! `status.lastColdStart`, a histogram per phase and a `ColdStart` event
//! naming the slowest phase.
//!
//! Contract: `POST /v1/coldstart/{namespace}/{name}` with a JSON
//! [`ColdStartReport`] (at most 4 KiB) answers 204 once recorded, 404 for an
//! unknown Function, 400 for a body that is not a report, 500 when the
//! apiserver failed. Any controller replica takes it, as activations. The
//! activator sends it once per wake, best effort: a lost report loses a
//! record, never a request.
//!
//! The activator's ends are on its clock; the pod's scheduled and started
//! times come from the pod's status (whole seconds, the apiserver's
//! precision) and are clamped between the activator's ends
//! ([`siesta_api::cold_start::phases`]), so the phases always add up to what
//! the first client waited.

use chrono::{DateTime, SecondsFormat, Utc};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Resource};
use siesta_api::cold_start::{self, ColdStartReport, ColdStartStatus, Ends};
use siesta_api::names::FunctionKey;
use siesta_api::{FUNCTION_LABEL, Function};

use crate::activation::Answer;
use crate::context::Context;
use crate::error::api_call;
use crate::events::{Note, event_reason};

/// The path prefix of the cold-start endpoint.
pub const PREFIX: &str = "/v1/coldstart/";

/// The largest report body accepted.
pub const MAX_REPORT_BYTES: usize = 4096;

/// The field manager of `status.lastColdStart`.
const MANAGER: &str = "siesta-cold-start";

/// Parses a report body.
pub fn parse_report(body: &[u8]) -> Result<ColdStartReport, String> {
    serde_json::from_slice(body).map_err(|e| format!("not a cold-start report: {e}"))
}

/// Records one cold start.
pub async fn record(ctx: &Context, key: &FunctionKey, report: ColdStartReport) -> Answer {
    let answer = |status: u16, body: String| Answer { status, body };
    let api: Api<Function> = Api::namespaced(ctx.client.clone(), &key.namespace);
    let function = match api_call(|| format!("read Function {key}"), api.get_opt(&key.name)).await {
        Ok(Some(f)) => f,
        Ok(None) => return answer(404, format!("function {key} not found\n")),
        Err(e) => return answer(500, format!("could not read function {key}: {e}\n")),
    };
    let pod = find_pod(ctx, key, &report.pod_addr).await;
    let ends = ends_of(&report, pod.as_ref());
    let durations = cold_start::phases(&ends);
    let status = ColdStartStatus::new(
        rfc3339_ms(report.arrived_ms),
        pod.as_ref().and_then(|p| p.metadata.name.clone()),
        &durations,
    );
    for (phase, d) in cold_start::Phase::ALL.iter().zip(durations.iter()) {
        ctx.metrics
            .wakes
            .cold_start_phase
            .with_label_values(&[key.namespace.as_str(), key.name.as_str(), phase.name()])
            .observe(d.as_secs_f64());
    }
    // The list is atomic under server-side apply: this manager owns it
    // whole and rewrites it from the Function read above.
    let recent = cold_start::append_recent(
        function
            .status
            .as_ref()
            .map_or(&[][..], |s| s.recent_cold_starts.as_slice()),
        &status,
    );
    let patch = serde_json::json!({
        "apiVersion": Function::api_version(&()),
        "kind": Function::kind(&()),
        "metadata": {"name": key.name},
        "status": {"lastColdStart": status, "recentColdStarts": recent},
    });
    let written = api_call(
        || format!("write the last cold start of Function {key}"),
        api.patch_status(
            &key.name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&patch),
        ),
    )
    .await;
    if let Err(e) = written {
        tracing::warn!(function = %key, error = %e, "could not record a cold start");
        return answer(
            500,
            format!("could not record the cold start of {key}: {e}\n"),
        );
    }
    let slowest = cold_start::slowest(&durations);
    ctx.events
        .publish(
            &function,
            Note::normal(
                event_reason::COLD_START,
                sentence(&status, slowest, &report),
            ),
        )
        .await;
    tracing::info!(function = %key, total = %status.total, slowest = slowest.name(), "cold start recorded");
    answer(204, String::new())
}

/// The event's note: the total and the slowest phase.
fn sentence(s: &ColdStartStatus, slowest: cold_start::Phase, r: &ColdStartReport) -> String {
    let took = s
        .phases()
        .iter()
        .find(|(p, _)| *p == slowest)
        .map_or("?", |(_, d)| *d)
        .to_string();
    format!(
        "cold start took {}; slowest phase: {} ({took}, until {}); {} request(s) waited",
        s.total,
        slowest.name(),
        slowest.sentence(),
        r.parked
    )
}

/// The Function's pod at `addr` (`IP:port`), if it can be found.
async fn find_pod(ctx: &Context, key: &FunctionKey, addr: &str) -> Option<Pod> {
    let ip = addr
        .rsplit_once(':')
        .map_or(addr, |(ip, _)| ip)
        .trim_matches(['[', ']']);
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &key.namespace);
    let list = pods
        .list(&ListParams::default().labels(&format!("{FUNCTION_LABEL}={}", key.name)))
        .await
        .map_err(|e| tracing::debug!(function = %key, error = %e, "listing pods for a cold start"))
        .ok()?;
    list.items.into_iter().find(|p| {
        p.status
            .as_ref()
            .and_then(|s| s.pod_ip.as_deref())
            .is_some_and(|pip| pip == ip)
    })
}

/// The phases' ends: the activator's, and the pod's scheduled and started
/// times from its status.
pub fn ends_of(r: &ColdStartReport, pod: Option<&Pod>) -> Ends {
    let status = pod.and_then(|p| p.status.as_ref());
    let scheduled = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| {
            c.iter()
                .find(|c| c.type_ == "PodScheduled" && c.status == "True")
        })
        .and_then(|c| c.last_transition_time.as_ref())
        .map(|t| t.0.as_millisecond());
    let started = status
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| {
            cs.iter()
                .filter_map(|c| c.state.as_ref()?.running.as_ref()?.started_at.as_ref())
                .map(|t| t.0.as_millisecond())
                .min()
        });
    let first_byte = r.first_byte_ms.unwrap_or(r.released_ms);
    Ends {
        arrived: r.arrived_ms,
        scale_written: r.scale_written_ms,
        scheduled,
        started,
        ready: Some(r.ready_ms),
        released: Some(r.released_ms),
        first_byte,
    }
}

fn rfc3339_ms(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateRunning, ContainerStatus, PodCondition, PodStatus,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn report() -> ColdStartReport {
        ColdStartReport {
            arrived_ms: 1_000_000,
            scale_written_ms: Some(1_000_015),
            ready_ms: 1_002_400,
            released_ms: 1_002_410,
            first_byte_ms: Some(1_002_420),
            pod_addr: "10.244.0.7:8080".into(),
            parked: 3,
        }
    }

    fn at(ms: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_millisecond(ms).unwrap())
    }

    #[test]
    fn the_pods_status_gives_the_scheduled_and_started_ends() {
        let pod = Pod {
            status: Some(PodStatus {
                conditions: Some(vec![PodCondition {
                    type_: "PodScheduled".into(),
                    status: "True".into(),
                    last_transition_time: Some(at(1_000_000)),
                    ..Default::default()
                }]),
                container_statuses: Some(vec![ContainerStatus {
                    state: Some(ContainerState {
                        running: Some(ContainerStateRunning {
                            started_at: Some(at(1_002_000)),
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let e = ends_of(&report(), Some(&pod));
        assert_eq!(e.scheduled, Some(1_000_000));
        assert_eq!(e.started, Some(1_002_000));
        let d = cold_start::phases(&e);
        let ms: Vec<u128> = d.iter().map(|d| d.as_millis()).collect();
        // Scheduled at whole second 1000 s is clamped after the scale write.
        assert_eq!(ms, vec![15, 0, 1_985, 400, 10, 10]);
        assert_eq!(d.iter().map(|d| d.as_millis()).sum::<u128>(), 2_420);
    }

    #[test]
    fn without_the_pod_the_activators_ends_still_add_up() {
        let d = cold_start::phases(&ends_of(&report(), None));
        assert_eq!(d.iter().map(|d| d.as_millis()).sum::<u128>(), 2_420);
        assert_eq!(cold_start::slowest(&d), cold_start::Phase::Ready);
    }

    #[test]
    fn a_report_is_parsed_or_refused_with_a_reason() {
        let json = serde_json::to_vec(&report()).unwrap();
        assert_eq!(parse_report(&json).unwrap(), report());
        assert!(
            parse_report(b"{}")
                .unwrap_err()
                .contains("not a cold-start report")
        );
    }

    #[test]
    fn the_event_names_the_slowest_phase_in_words() {
        let d = cold_start::phases(&ends_of(&report(), None));
        let s = ColdStartStatus::new(rfc3339_ms(1_000_000), None, &d);
        let note = sentence(&s, cold_start::slowest(&d), &report());
        assert!(
            note.starts_with("cold start took 2.420s; slowest phase: ready"),
            "{note}"
        );
        assert!(note.contains("3 request(s) waited"), "{note}");
        assert_eq!(s.at, "1970-01-01T00:16:40.000Z");
    }
}
