//! What scaling to zero saved, as `list` (the SAVED column) and `explain`
//! (a paragraph) show it: `status.usage` over `--since`, beside today's
//! `maxReplicas` always on and one pod always on
//! ([`siesta_api::usage::Ledger::window`] does the arithmetic).

use std::fmt::Write as _;
use std::time::Duration;

use chrono::{DateTime, Utc};
use siesta_api::Function;
use siesta_api::usage::{Ledger, Requests, Savings};

use super::format::{age, number};

/// The window the user picks: `--since 24h|90m|7d`.
#[derive(clap::Args, Debug, Clone)]
pub struct SinceArgs {
    /// How far back "what scaling to zero saved" looks: e.g. 24h, 90m, 7d
    /// (the record keeps 7 days).
    #[arg(long, default_value = "24h", value_parser = siesta_api::usage::parse_since)]
    pub since: Duration,
}

/// The Function's record over `since`; `None` until the controller has
/// written one. One pod's requests are the newest pod's, as the cluster
/// ran it, else the spec's.
pub fn savings_of(f: &Function, since: Duration, now: DateTime<Utc>) -> Option<Savings> {
    let usage = f.status.as_ref()?.usage.as_ref()?;
    let ledger = Ledger::from_status(usage)?;
    let per_pod = ledger
        .latest_requests()
        .unwrap_or_else(|| Requests::of([f.spec.resources.as_ref()]));
    Some(ledger.window(
        since,
        now.timestamp_millis(),
        f.spec.scale.max_replicas,
        per_pod,
    ))
}

/// The SAVED cell: the share of pod-seconds saved against one pod always
/// on (negative when it ran more than one pod's worth).
pub fn cell(s: Option<&Savings>) -> String {
    match s.and_then(|s| s.saved_vs_one_always_on_percent) {
        Some(p) => format!("{}%", p.round()),
        None => "<none>".into(),
    }
}

/// "saved 90% of the pod-seconds of", or "used 9% more pod-seconds than"
/// when the function ran more than the baseline.
fn versus(p: Option<f64>) -> String {
    match p {
        None => "no baseline to compare with (nothing covered yet) for".into(),
        Some(p) if p < 0.0 => format!("used {}% more pod-seconds than", number(-p)),
        Some(p) => format!("saved {}% of the pod-seconds of", number(p)),
    }
}

/// The explain paragraph.
pub fn text(s: Option<&Savings>, asked: Duration) -> String {
    let Some(s) = s else {
        return "What scaling to zero saved: no record yet (the leading controller writes status.usage once it has seen the Function).\n".into();
    };
    let mut o = String::new();
    let covered = age(Duration::from_secs_f64(s.covered_seconds.max(0.0)));
    let span = if s.from == s.asked_from {
        format!("the last {}", age(asked))
    } else {
        format!(
            "the last {} asked, {covered} covered (the record starts at {})",
            age(asked),
            s.from
        )
    };
    let _ = writeln!(
        o,
        "What scaling to zero saved over {span}: {} one pod always on, {} {} pods (today's maxReplicas) always on.",
        versus(s.saved_vs_one_always_on_percent),
        versus(s.saved_vs_max_replicas_percent),
        s.max_replicas
    );
    let _ = writeln!(
        o,
        "  pod-seconds:        used {}, at maxReplicas {}, one always on {};",
        number(s.used.pod_seconds),
        number(s.at_max_replicas.pod_seconds),
        number(s.one_always_on.pod_seconds)
    );
    match s.requests.cpu_cores {
        Some(cpu) => {
            let _ = writeln!(
                o,
                "  CPU core-seconds:   used {}, at maxReplicas {}, one always on {} ({} cores per pod);",
                number(s.used.cpu_core_seconds),
                number(s.at_max_replicas.cpu_core_seconds),
                number(s.one_always_on.cpu_core_seconds),
                number(cpu)
            );
        }
        None => o.push_str("  CPU core-seconds:   its pods request no CPU, so none is counted;\n"),
    }
    match s.requests.memory_bytes {
        Some(memory) => {
            let _ = writeln!(
                o,
                "  memory GiB-seconds: used {}, at maxReplicas {}, one always on {} ({} MiB per pod).",
                number(s.used.memory_gib_seconds()),
                number(s.at_max_replicas.memory_gib_seconds()),
                number(s.one_always_on.memory_gib_seconds()),
                number(memory / (1024.0 * 1024.0))
            );
        }
        None => {
            o.push_str("  memory GiB-seconds: its pods request no memory, so none is counted.\n")
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use siesta_api::usage::{PodInterval, UsageStatus};

    fn function(usage: Option<UsageStatus>) -> Function {
        let spec = serde_json::from_value(serde_json::json!({
            "image": "x",
            "scale": {"maxReplicas": 4},
            "resources": {"requests": {"cpu": "500m", "memory": "256Mi"}},
        }))
        .unwrap();
        let mut f = Function::new("hello", spec);
        f.status = Some(siesta_api::FunctionStatus {
            usage,
            ..Default::default()
        });
        f
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn usage() -> UsageStatus {
        UsageStatus {
            since: "2026-12-01T10:00:00Z".into(),
            recorded_at: "2026-12-01T10:59:00Z".into(),
            pods: vec![
                PodInterval {
                    pod: "hello-a".into(),
                    start: "2026-12-01T10:10:00Z".into(),
                    end: Some("2026-12-01T10:13:00Z".into()),
                    cpu_cores: 0.5,
                    memory_bytes: 256.0 * 1024.0 * 1024.0,
                },
                PodInterval {
                    pod: "hello-b".into(),
                    start: "2026-12-01T10:11:00Z".into(),
                    end: Some("2026-12-01T10:14:00Z".into()),
                    cpu_cores: 0.5,
                    memory_bytes: 256.0 * 1024.0 * 1024.0,
                },
            ],
            hours: vec![],
        }
    }

    #[test]
    fn the_paragraph_sets_used_beside_both_baselines_over_the_covered_span() {
        let f = function(Some(usage()));
        let s = savings_of(&f, Duration::from_secs(86_400), at("2026-12-01T11:00:00Z")).unwrap();
        assert_eq!(s.used.pod_seconds, 360.0);
        assert_eq!(s.covered_seconds, 3600.0);
        assert_eq!(cell(Some(&s)), "90%");
        let t = text(Some(&s), Duration::from_secs(86_400));
        assert!(t.contains("over the last 24h asked, 60m covered (the record starts at 2026-12-01T10:00:00Z): saved 90% of the pod-seconds of one pod always on, saved 97.5% of the pod-seconds of 4 pods (today's maxReplicas) always on."), "{t}");
        assert!(
            t.contains("pod-seconds:        used 360, at maxReplicas 14400, one always on 3600;"),
            "{t}"
        );
        assert!(t.contains("CPU core-seconds:   used 180, at maxReplicas 7200, one always on 1800 (0.5 cores per pod);"), "{t}");
        assert!(t.contains("memory GiB-seconds: used 90, at maxReplicas 3600, one always on 900 (256 MiB per pod)."), "{t}");
    }

    #[test]
    fn a_window_inside_the_record_is_said_plainly() {
        let f = function(Some(usage()));
        let s = savings_of(&f, Duration::from_secs(1800), at("2026-12-01T10:30:00Z")).unwrap();
        assert_eq!(s.used.pod_seconds, 360.0);
        let t = text(Some(&s), Duration::from_secs(1800));
        assert!(
            t.contains("over the last 30m: saved 80% of the pod-seconds of one pod always on"),
            "{t}"
        );
    }

    #[test]
    fn more_than_one_pods_worth_is_said_as_more_not_as_a_negative_saving() {
        let f = function(Some(usage()));
        // 360 pod-seconds over 5 minutes: 20% more than one pod.
        let s = savings_of(&f, Duration::from_secs(300), at("2026-12-01T10:15:00Z")).unwrap();
        assert_eq!(cell(Some(&s)), "-20%");
        let t = text(Some(&s), Duration::from_secs(300));
        assert!(t.contains("over the last 5m: used 20% more pod-seconds than one pod always on, saved 70% of the pod-seconds of 4 pods"), "{t}");
    }

    #[test]
    fn pods_without_requests_say_so_instead_of_a_number() {
        let mut u = usage();
        for p in &mut u.pods {
            p.cpu_cores = 0.0;
        }
        let s = savings_of(
            &function(Some(u)),
            Duration::from_secs(3600),
            at("2026-12-01T11:00:00Z"),
        );
        let t = text(s.as_ref(), Duration::from_secs(3600));
        assert!(
            t.contains("its pods request no CPU, so none is counted"),
            "{t}"
        );
    }

    #[test]
    fn without_a_record_there_is_no_number() {
        let f = function(None);
        assert_eq!(savings_of(&f, Duration::from_secs(60), Utc::now()), None);
        assert_eq!(cell(None), "<none>");
        assert!(text(None, Duration::from_secs(60)).contains("no record yet"));
    }
}
