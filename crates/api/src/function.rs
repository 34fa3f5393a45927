use k8s_openapi::api::core::v1::{EnvVar, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A scale-to-zero HTTP function: an image and a few scaling knobs.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "siesta.dev",
    version = "v1alpha1",
    kind = "Function",
    namespaced,
    shortname = "fn",
    status = "FunctionStatus",
    printcolumn = r#"{"name":"URL","type":"string","jsonPath":".status.url"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Replicas","type":"integer","jsonPath":".status.readyReplicas"}"#,
    printcolumn = r#"{"name":"Desired","type":"integer","jsonPath":".status.desiredReplicas"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","priority":1,"jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct FunctionSpec {
    /// Container image that serves HTTP on `port`.
    #[schemars(length(min = 1))]
    pub image: String,
    /// Container port; also passed to the container as env `PORT`.
    #[serde(default = "defaults::port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// Protocol the container speaks on `port`: `http1`, or `h2c` (HTTP/2 without TLS).
    #[serde(default)]
    pub protocol: Protocol,
    /// Entrypoint, as in a container; the image's default when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Arguments, as in a container.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Environment variables, as in a container.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// Compute resources, as in a container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Most in-flight requests one pod gets at once; 0 means no limit.
    #[serde(default)]
    #[schemars(range(min = 0, max = 10000))]
    pub container_concurrency: i32,
    /// Whole-request timeout, from arrival at the activator to the last byte.
    #[serde(default = "defaults::timeout_seconds")]
    #[schemars(range(min = 1, max = 3600))]
    pub timeout_seconds: i32,
    /// Largest request body the activator forwards, in bytes; a longer one
    /// gets 413 (at once when its Content-Length says so, else when the
    /// limit is crossed). None by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_request_body_bytes: Option<i64>,
    /// How requests wait while no pod is ready.
    #[serde(default)]
    pub queue: QueueSpec,
    /// How the function scales.
    #[serde(default)]
    pub scale: ScaleSpec,
}

/// The protocol a function's container speaks.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    Http1,
    H2c,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueueSpec {
    /// Requests parked per function while no pod is ready; past it, 503 with Retry-After.
    #[serde(default = "defaults::queue_max_requests")]
    #[schemars(range(min = 1, max = 1000000))]
    pub max_requests: i32,
    /// Longest wait for a ready pod; past it, 504.
    #[serde(default = "defaults::queue_timeout_seconds")]
    #[schemars(range(min = 1, max = 3600))]
    pub timeout_seconds: i32,
}

impl Default for QueueSpec {
    fn default() -> Self {
        Self {
            max_requests: defaults::queue_max_requests(),
            timeout_seconds: defaults::queue_timeout_seconds(),
        }
    }
}

/// What the autoscaler measures.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ScaleMetric {
    /// Average in-flight requests per pod.
    #[default]
    Concurrency,
    /// Requests per second per pod.
    Rps,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScaleSpec {
    /// Fewest replicas; 0 lets the function scale to zero.
    #[serde(default)]
    #[schemars(range(min = 0, max = 1000))]
    pub min_replicas: i32,
    /// Most replicas.
    #[serde(default = "defaults::max_replicas")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_replicas: i32,
    /// `concurrency` (in-flight requests per pod) or `rps` (requests/s per pod).
    #[serde(default)]
    pub metric: ScaleMetric,
    /// Per-pod target of `metric`.
    #[serde(default = "defaults::target")]
    #[schemars(range(min = 0.01, max = 100000.0))]
    // The apiserver compares a whole-number value with an integer-truncated
    // minimum (go-openapi's MinimumNativeType: int64(0.01) == 0), so
    // `target: 0` passed `minimum: 0.01`; "above 0" holds for integers too.
    #[schemars(extend("allOf" = [{"minimum": 0, "exclusiveMinimum": true}]))]
    pub target: f64,
    /// Length of the stable window the average is taken over.
    #[serde(default = "defaults::stable_window_seconds")]
    #[schemars(range(min = 6, max = 3600))]
    pub stable_window_seconds: i32,
    /// Panic window as a percentage of the stable window.
    #[serde(default = "defaults::panic_window_percent")]
    #[schemars(range(min = 1, max = 100))]
    pub panic_window_percent: i32,
    /// Panic when panic-window demand reaches this percentage of current capacity.
    #[serde(default = "defaults::panic_threshold_percent")]
    #[schemars(range(min = 110, max = 1000))]
    pub panic_threshold_percent: i32,
    /// Idle time with zero requests before scaling to zero.
    #[serde(default = "defaults::scale_to_zero_after_seconds")]
    #[schemars(range(min = 0, max = 86400))]
    pub scale_to_zero_after_seconds: i32,
    /// Scale down only to the highest desired count seen over this delay.
    #[serde(default)]
    #[schemars(range(min = 0, max = 3600))]
    pub scale_down_delay_seconds: i32,
    /// Minimums by time of day: while a window is open the function keeps
    /// at least its `minReplicas` (the highest of the open windows), and
    /// its pods are started ahead by the measured cold start so that they
    /// are Ready when it opens.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub schedules: Vec<ScaleSchedule>,
}

/// One window of `scale.schedules`: it opens at each time `cron` matches in
/// `timeZone` and stays open for `duration`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScaleSchedule {
    /// Standard five-field cron expression, `minute hour day-of-month month
    /// day-of-week` (e.g. `0 8 * * 1-5`: 08:00 on weekdays), read in `timeZone`.
    #[schemars(length(min = 1, max = 100))]
    pub cron: String,
    /// IANA time zone the cron expression is read in, e.g. `Europe/Berlin`.
    #[serde(default = "defaults::time_zone")]
    #[schemars(length(min = 1, max = 64))]
    pub time_zone: String,
    /// How long the window stays open after each match: `8h`, `30m`, `1h30m`
    /// (at most 744h, 31 days).
    #[schemars(
        length(min = 2, max = 32),
        regex(pattern = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$")
    )]
    pub duration: String,
    /// Fewest replicas while the window is open; at most `maxReplicas`.
    #[schemars(range(min = 0, max = 1000))]
    pub min_replicas: i32,
}

impl Default for ScaleSpec {
    fn default() -> Self {
        Self {
            min_replicas: 0,
            max_replicas: defaults::max_replicas(),
            metric: ScaleMetric::default(),
            target: defaults::target(),
            stable_window_seconds: defaults::stable_window_seconds(),
            panic_window_percent: defaults::panic_window_percent(),
            panic_threshold_percent: defaults::panic_threshold_percent(),
            scale_to_zero_after_seconds: defaults::scale_to_zero_after_seconds(),
            scale_down_delay_seconds: 0,
            schedules: Vec::new(),
        }
    }
}

/// Observed state, written only by the controller.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FunctionStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Where the function answers (through the activator).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default)]
    pub replicas: i32,
    #[serde(default)]
    pub ready_replicas: i32,
    #[serde(default)]
    pub desired_replicas: i32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaler: Option<AutoscalerStatus>,
    /// The phases of the last wake from zero.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_cold_start: Option<crate::cold_start::ColdStartStatus>,
    /// The last few wakes from zero, oldest first (at most
    /// [`crate::cold_start::RECENT_COLD_STARTS`]): when and how long, so a
    /// client counts the last hour's cold starts and their median from the
    /// Function alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recent_cold_starts: Vec<crate::cold_start::RecentColdStart>,
    /// The pods it ran, from their own start and stop times, with what they
    /// requested: what scaling to zero saved (`kubectl siesta explain`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<crate::usage::UsageStatus>,
}

/// The autoscaler's last decision and what it was based on.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AutoscalerStatus {
    /// `stable` or `panic`.
    pub mode: String,
    pub observed_concurrency: f64,
    pub observed_rps: f64,
    pub reason: String,
    /// The `scale.schedules` window that sets the floor now, or opens
    /// within the cold-start lead: its index, cron, time zone and when it
    /// closes (or opens). Omitted when no window is open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_schedule: Option<String>,
}

impl Function {
    /// The label value and resource name shared by the Function's children.
    pub fn child_name(&self) -> String {
        kube::ResourceExt::name_any(self)
    }
}

pub mod defaults {
    pub fn port() -> i32 {
        8080
    }
    pub fn timeout_seconds() -> i32 {
        300
    }
    pub fn queue_max_requests() -> i32 {
        1000
    }
    pub fn queue_timeout_seconds() -> i32 {
        60
    }
    pub fn max_replicas() -> i32 {
        10
    }
    pub fn target() -> f64 {
        10.0
    }
    pub fn stable_window_seconds() -> i32 {
        60
    }
    pub fn panic_window_percent() -> i32 {
        10
    }
    pub fn panic_threshold_percent() -> i32 {
        200
    }
    pub fn scale_to_zero_after_seconds() -> i32 {
        30
    }
    pub fn time_zone() -> String {
        "UTC".to_string()
    }
}
