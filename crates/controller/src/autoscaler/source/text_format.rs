//! The few series the autoscaler reads, picked out of a page in the
//! Prometheus text format line by line, without regular expressions.
//!
//! Pure. An activator's page carries every Function's series, about 39
//! lines each even at zero (two histograms of 17 and 15 buckets); the
//! autoscaler wants four of those lines and reads the page every second.
//! With a general parser (`prometheus-parse`: a regex per line, a map per
//! sample) that was a third of the controller's CPU at 1,000 Functions,
//! measured with `perf` (hack/bench/scale.sh, SCALE_PERF). Here a line whose
//! name is not wanted is dropped after comparing its first bytes, and a
//! wanted one is read without allocating, except for an escaped label value.
//!
//! As with the parser it replaces, lines that are not samples are skipped,
//! not errors: an activator page with none of the wanted series says there
//! was no traffic.

use std::borrow::Cow;

/// One sample line: its name, its label block (between the braces) and value.
#[derive(Debug, PartialEq)]
pub struct Sample<'a> {
    pub name: &'a str,
    labels: &'a str,
    pub value: f64,
}

impl<'a> Sample<'a> {
    /// The value of label `key`, unescaped (`\\`, `\"`, `\n`).
    pub fn label(&self, key: &str) -> Option<Cow<'a, str>> {
        labels(self.labels).find(|(k, _)| *k == key).map(|(_, v)| v)
    }
}

/// The samples of `text` whose metric name is one of `wanted`.
pub fn samples<'a>(text: &'a str, wanted: &'a [&'a str]) -> impl Iterator<Item = Sample<'a>> + 'a {
    text.lines().filter_map(move |line| {
        let line = line.trim_start();
        let name_end = line.find(['{', ' ', '\t'])?;
        let name = &line[..name_end];
        if !wanted.contains(&name) {
            return None;
        }
        let rest = &line[name_end..];
        let (labels, rest) = match rest.strip_prefix('{') {
            Some(r) => {
                let close = label_block_end(r)?;
                (&r[..close], &r[close + 1..])
            }
            None => ("", rest),
        };
        // The value, then an optional timestamp.
        let value = parse_value(rest.split_whitespace().next()?)?;
        Some(Sample {
            name,
            labels,
            value,
        })
    })
}

/// Where the label block closes: the first `}` outside a quoted value.
fn label_block_end(s: &str) -> Option<usize> {
    let mut quoted = false;
    let mut escaped = false;
    for (i, b) in s.bytes().enumerate() {
        match b {
            _ if escaped => escaped = false,
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            b'}' if !quoted => return Some(i),
            _ => {}
        }
    }
    None
}

/// `key="value"` pairs of a label block; stops at the first malformed pair.
fn labels(block: &str) -> impl Iterator<Item = (&str, Cow<'_, str>)> {
    let mut rest = block;
    std::iter::from_fn(move || {
        rest = rest.trim_start_matches([',', ' ']);
        let eq = rest.find('=')?;
        let key = rest[..eq].trim();
        let after = rest[eq + 1..].trim_start().strip_prefix('"')?;
        let mut escaped = false;
        let mut has_escape = false;
        let mut end = None;
        for (i, b) in after.bytes().enumerate() {
            match b {
                _ if escaped => escaped = false,
                b'\\' => {
                    escaped = true;
                    has_escape = true;
                }
                b'"' => {
                    end = Some(i);
                    break;
                }
                _ => {}
            }
        }
        let end = end?;
        let raw = &after[..end];
        rest = &after[end + 1..];
        let value = if has_escape {
            Cow::Owned(unescape(raw))
        } else {
            Cow::Borrowed(raw)
        };
        Some((key, value))
    })
}

fn unescape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

/// A sample value: a float, `+Inf`, `-Inf` or `NaN` (any case).
fn parse_value(s: &str) -> Option<f64> {
    s.parse::<f64>()
        .ok()
        .or_else(|| match s.to_ascii_lowercase().as_str() {
            "nan" => Some(f64::NAN),
            "+inf" | "inf" => Some(f64::INFINITY),
            "-inf" => Some(f64::NEG_INFINITY),
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const WANTED: &[&str] = &["a_total", "b"];

    fn all(text: &str) -> Vec<(String, Option<String>, Option<String>, f64)> {
        samples(text, WANTED)
            .map(|s| {
                (
                    s.name.to_string(),
                    s.label("namespace").map(|c| c.into_owned()),
                    s.label("function").map(|c| c.into_owned()),
                    s.value,
                )
            })
            .collect()
    }

    #[test]
    fn only_wanted_names_are_read_with_their_labels_and_value() {
        let text = "# HELP a_total x\n# TYPE a_total counter\n\
            a_total{function=\"f\",namespace=\"n\"} 3\n\
            a_total_bucket{function=\"f\",namespace=\"n\",le=\"1\"} 9\n\
            a_totally{function=\"f\"} 9\n\
            b 2.5 1700000000000\n\
            c{function=\"f\"} 1\n";
        assert_eq!(
            all(text),
            vec![
                ("a_total".into(), Some("n".into()), Some("f".into()), 3.0),
                ("b".into(), None, None, 2.5),
            ]
        );
    }

    #[test]
    fn quoted_braces_commas_and_escapes_stay_in_label_values() {
        let text = "a_total{namespace=\"n,}\\\"x\\\\\",function=\"f\\ng\",} 1\n";
        assert_eq!(
            all(text),
            vec![(
                "a_total".into(),
                Some("n,}\"x\\".into()),
                Some("f\ng".into()),
                1.0
            )]
        );
    }

    #[test]
    fn special_values_parse_and_broken_lines_are_skipped() {
        let text = "b +Inf\nb -Inf\nb NaN\nb nonsense\na_total{namespace=\"n\" 1\nb\n<html>\n";
        let v: Vec<f64> = samples(text, WANTED).map(|s| s.value).collect();
        assert_eq!(v.len(), 3, "{v:?}");
        assert_eq!(v[0], f64::INFINITY);
        assert_eq!(v[1], f64::NEG_INFINITY);
        assert!(v[2].is_nan());
    }

    #[test]
    fn a_missing_label_is_none() {
        let text = "a_total{code=\"200\"} 1\n";
        let s: Vec<Sample<'_>> = samples(text, WANTED).collect();
        assert_eq!(s[0].label("function"), None);
        assert_eq!(s[0].label("code").as_deref(), Some("200"));
    }
}
