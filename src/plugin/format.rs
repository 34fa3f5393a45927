//! Pure formatting, kubectl's way: tables with capitalised headers and
//! columns three spaces apart, ages like `5m`, `3h20m`, `2d`.

use std::time::Duration;

/// A table as `kubectl get` prints it: each column as wide as its widest
/// cell, three spaces between columns, no trailing spaces.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                let pad = widths[i].saturating_sub(cell.chars().count()) + 3;
                out.push_str(cell);
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.truncate(out.trim_end().len());
        out.push('\n');
        out
    };
    let mut out = line(headers.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// An age as kubectl prints it (k8s.io/apimachinery's `HumanDuration`,
/// simplified): `45s`, `5m30s`, `42m`, `3h20m`, `20h`, `3d4h`, `12d`.
pub fn age(d: Duration) -> String {
    let s = d.as_secs();
    let (m, h, days) = (s / 60, s / 3600, s / 86400);
    if s < 120 {
        format!("{s}s")
    } else if m < 10 {
        if s.is_multiple_of(60) {
            format!("{m}m")
        } else {
            format!("{m}m{}s", s % 60)
        }
    } else if h < 3 {
        format!("{m}m")
    } else if h < 8 {
        if m.is_multiple_of(60) {
            format!("{h}h")
        } else {
            format!("{h}h{}m", m % 60)
        }
    } else if h < 48 {
        format!("{h}h")
    } else if days < 8 {
        if h.is_multiple_of(24) {
            format!("{days}d")
        } else {
            format!("{days}d{}h", h % 24)
        }
    } else {
        format!("{days}d")
    }
}

/// The median of `values` (the mean of the middle two for an even count).
pub fn median(values: &[Duration]) -> Option<Duration> {
    let mut v = values.to_vec();
    v.sort();
    let n = v.len();
    match n {
        0 => None,
        _ if !n.is_multiple_of(2) => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2),
    }
}

/// A number as a table shows it: up to two decimals, no trailing zeros.
pub fn number(v: f64) -> String {
    let s = format!("{v:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.into() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_aligns_columns_three_spaces_apart() {
        let t = table(
            &["NAME", "READY", "AGE"],
            &[
                vec!["hello".into(), "1/1".into(), "5m".into()],
                vec!["a-longer-name".into(), "0/0".into(), "12d".into()],
            ],
        );
        assert_eq!(
            t,
            "NAME            READY   AGE\n\
             hello           1/1     5m\n\
             a-longer-name   0/0     12d\n"
        );
    }

    #[test]
    fn ages_read_like_kubectls() {
        let cases = [
            (45, "45s"),
            (119, "119s"),
            (330, "5m30s"),
            (300, "5m"),
            (42 * 60, "42m"),
            (3 * 3600 + 20 * 60, "3h20m"),
            (20 * 3600, "20h"),
            (3 * 86400 + 4 * 3600, "3d4h"),
            (12 * 86400, "12d"),
        ];
        for (secs, want) in cases {
            assert_eq!(age(Duration::from_secs(secs)), want, "{secs}s");
        }
    }

    #[test]
    fn the_median_of_an_even_count_is_the_mean_of_the_middle_two() {
        let ms = |v: &[u64]| {
            v.iter()
                .map(|m| Duration::from_millis(*m))
                .collect::<Vec<_>>()
        };
        assert_eq!(median(&ms(&[])), None);
        assert_eq!(
            median(&ms(&[900, 100, 500])),
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            median(&ms(&[100, 900, 300, 500])),
            Some(Duration::from_millis(400))
        );
    }

    #[test]
    fn numbers_drop_trailing_zeros() {
        assert_eq!(number(13.2), "13.2");
        assert_eq!(number(0.0), "0");
        assert_eq!(number(2.456), "2.46");
        assert_eq!(number(40.0), "40");
    }
}
