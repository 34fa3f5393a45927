//! `kubectl siesta list`: one row per Function, from the Functions alone
//! (status written by the controller), so it needs only `list functions`.

use std::process::ExitCode;
use std::time::Duration;

use chrono::{DateTime, Utc};
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use serde::Serialize;
use siesta_api::Function;
use siesta_api::cold_start::{RecentColdStart, format_duration, parse_duration};

use siesta_api::usage::Savings;

use super::cluster::Cluster;
use super::format::{age, median, number, table};
use super::{Global, Output, print_object};

/// What `list` shows of one Function; `-o json|yaml` prints these.
#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    pub namespace: String,
    pub name: String,
    pub ready_replicas: i32,
    pub desired_replicas: i32,
    /// `stable`, `panic`, or empty before the first decision.
    pub mode: String,
    pub rps: f64,
    pub concurrency: f64,
    pub cold_starts_last_hour: usize,
    /// Median total of the last hour's cold starts.
    pub median_cold_start: Option<String>,
    pub created: Option<String>,
    /// What scaling to zero saved over `--since` (none before the
    /// controller wrote `status.usage`).
    pub saved: Option<Savings>,
}

/// The last hour's cold starts: how many, and their median total.
pub fn cold_starts_within(
    recent: &[RecentColdStart],
    now: DateTime<Utc>,
    window: Duration,
) -> (usize, Option<Duration>) {
    let since = now - chrono::Duration::from_std(window).unwrap_or(chrono::Duration::zero());
    let totals: Vec<Duration> = recent
        .iter()
        .filter(|r| {
            DateTime::parse_from_rfc3339(&r.at).is_ok_and(|at| at.with_timezone(&Utc) >= since)
        })
        .filter_map(|r| parse_duration(&r.total))
        .collect();
    (totals.len(), median(&totals))
}

impl Row {
    pub fn of(f: &Function, now: DateTime<Utc>, since: Duration) -> Row {
        let status = f.status.clone().unwrap_or_default();
        let autoscaler = status.autoscaler.clone().unwrap_or_default();
        let (cold, med) =
            cold_starts_within(&status.recent_cold_starts, now, Duration::from_secs(3600));
        Row {
            namespace: f.namespace().unwrap_or_default(),
            name: f.name_any(),
            ready_replicas: status.ready_replicas,
            desired_replicas: status.desired_replicas,
            mode: autoscaler.mode,
            rps: autoscaler.observed_rps,
            concurrency: autoscaler.observed_concurrency,
            cold_starts_last_hour: cold,
            median_cold_start: med.map(format_duration),
            created: f
                .metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0.to_string()),
            saved: super::saved::savings_of(f, since, now),
        }
    }
}

/// The table; NAMESPACE first with `-A`, as kubectl.
pub fn render(rows: &[Row], all_namespaces: bool, now: DateTime<Utc>) -> String {
    let mut headers = vec![
        "NAME",
        "READY",
        "MODE",
        "RPS",
        "CONCURRENCY",
        "COLD-1H",
        "MEDIAN-COLD",
        "SAVED",
        "AGE",
    ];
    if all_namespaces {
        headers.insert(0, "NAMESPACE");
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let created = r
                .created
                .as_deref()
                .and_then(|c| DateTime::parse_from_rfc3339(c).ok());
            let mut row = vec![
                r.name.clone(),
                format!("{}/{}", r.ready_replicas, r.desired_replicas),
                if r.mode.is_empty() {
                    "<none>".into()
                } else {
                    r.mode.clone()
                },
                number(r.rps),
                number(r.concurrency),
                r.cold_starts_last_hour.to_string(),
                r.median_cold_start
                    .clone()
                    .unwrap_or_else(|| "<none>".into()),
                super::saved::cell(r.saved.as_ref()),
                created.map_or("<unknown>".into(), |c| {
                    age((now - c.with_timezone(&Utc)).to_std().unwrap_or_default())
                }),
            ];
            if all_namespaces {
                row.insert(0, r.namespace.clone());
            }
            row
        })
        .collect();
    table(&headers, &cells)
}

pub async fn run(
    c: &Cluster,
    g: &Global,
    since: Duration,
    out: Option<Output>,
) -> anyhow::Result<ExitCode> {
    let api: Api<Function> = if g.all_namespaces {
        Api::all(c.client.clone())
    } else {
        Api::namespaced(c.client.clone(), &c.namespace)
    };
    let functions = api.list(&ListParams::default()).await.map_err(|e| {
        anyhow::anyhow!("could not list Functions (is the CRD installed? kubectl apply -f crds/function.yaml): {e}")
    })?;
    let now = Utc::now();
    let mut rows: Vec<Row> = functions
        .items
        .iter()
        .map(|f| Row::of(f, now, since))
        .collect();
    rows.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    if let Some(out) = out {
        #[derive(Serialize)]
        struct Items<'a> {
            items: &'a [Row],
        }
        print_object(&Items { items: &rows }, out)?;
    } else if rows.is_empty() {
        if g.all_namespaces {
            eprintln!("No Functions found.");
        } else {
            eprintln!("No Functions found in {} namespace.", c.namespace);
        }
    } else {
        print!("{}", render(&rows, g.all_namespaces, now));
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use siesta_api::{AutoscalerStatus, FunctionSpec, FunctionStatus};

    fn recent(at: &str, total: &str) -> RecentColdStart {
        RecentColdStart {
            at: at.into(),
            total: total.into(),
        }
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn only_the_last_hours_cold_starts_count() {
        let r = [
            recent("2026-12-01T10:30:00.000Z", "9.000s"),
            recent("2026-12-01T11:10:00.000Z", "1.200s"),
            recent("2026-12-01T11:50:00.000Z", "800ms"),
            recent("not a time", "1s"),
        ];
        let (n, med) = cold_starts_within(&r, now(), Duration::from_secs(3600));
        assert_eq!(n, 2);
        assert_eq!(med, Some(Duration::from_millis(1000)));
    }

    #[test]
    fn a_function_becomes_a_row_and_the_row_a_line() {
        let mut f = Function::new(
            "hello",
            serde_json::from_value::<FunctionSpec>(serde_json::json!({"image": "x"})).unwrap(),
        );
        f.metadata.namespace = Some("team-a".into());
        f.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            "2026-12-01T11:55:00Z".parse().unwrap(),
        ));
        f.status = Some(FunctionStatus {
            ready_replicas: 1,
            desired_replicas: 2,
            autoscaler: Some(AutoscalerStatus {
                mode: "stable".into(),
                observed_concurrency: 13.2,
                observed_rps: 40.0,
                reason: String::new(),
                active_schedule: None,
            }),
            recent_cold_starts: vec![recent("2026-12-01T11:56:00.000Z", "1.309s")],
            usage: Some(siesta_api::usage::UsageStatus {
                since: "2026-12-01T11:55:00Z".into(),
                recorded_at: "2026-12-01T11:59:00Z".into(),
                pods: vec![siesta_api::usage::PodInterval {
                    pod: "hello-a".into(),
                    start: "2026-12-01T11:56:00Z".into(),
                    end: Some("2026-12-01T11:56:30Z".into()),
                    cpu_cores: 0.0,
                    memory_bytes: 0.0,
                }],
                hours: vec![],
            }),
            ..FunctionStatus::default()
        });
        let row = Row::of(&f, now(), Duration::from_secs(86_400));
        // 30 pod-seconds of the 300 s the record covers.
        assert_eq!(row.saved.as_ref().unwrap().used.pod_seconds, 30.0);
        assert_eq!(row.cold_starts_last_hour, 1);
        assert_eq!(row.median_cold_start.as_deref(), Some("1.309s"));
        let t = render(&[row], true, now());
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[0],
            "NAMESPACE   NAME    READY   MODE     RPS   CONCURRENCY   COLD-1H   MEDIAN-COLD   SAVED   AGE"
        );
        assert_eq!(
            lines[1],
            "team-a      hello   1/2     stable   40    13.2          1         1.309s        90%     5m"
        );
    }
}
