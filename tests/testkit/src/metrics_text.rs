//! Reading samples out of the Prometheus text format, as `/metrics` of the
//! activator and the controller serve it: one `name{labels} value` a line.

/// Sum of the samples of `name` whose labels contain `labels` (0 when there
/// is none). Only `name` itself counts, not `name_bucket` or another
/// family that starts with it.
pub fn metric_sum(text: &str, name: &str, labels: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
                && l.contains(labels)
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The value of one series, named with all its labels as the text has them,
/// e.g. `siesta_activator_requests_total{code="200",function="f",namespace="ns"}`.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
# HELP siesta_x_total Things.
# TYPE siesta_x_total counter
siesta_x_total{function=\"f\",namespace=\"a\"} 2
siesta_x_total{function=\"f\",namespace=\"b\"} 3.5
siesta_x_total_extra{function=\"f\",namespace=\"a\"} 100
siesta_up 1
";

    #[test]
    fn sums_only_the_named_family_and_the_matching_labels() {
        assert_eq!(metric_sum(TEXT, "siesta_x_total", "function=\"f\""), 5.5);
        assert_eq!(metric_sum(TEXT, "siesta_x_total", "namespace=\"a\""), 2.0);
        assert_eq!(metric_sum(TEXT, "siesta_up", ""), 1.0);
        assert_eq!(metric_sum(TEXT, "siesta_missing", ""), 0.0);
    }

    #[test]
    fn reads_one_whole_series_and_nothing_it_prefixes() {
        let b = "siesta_x_total{function=\"f\",namespace=\"b\"}";
        assert_eq!(sample(TEXT, b), Some(3.5));
        assert_eq!(sample(TEXT, "siesta_up"), Some(1.0));
        assert_eq!(sample(TEXT, "siesta_x"), None);
        assert_eq!(sample(TEXT, "siesta_x_total{function=\"f\""), None);
    }
}
