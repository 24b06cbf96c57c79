//! Which series of a study enter the analysis: one per known contrast phase.
//!
//! Rule: a series is a candidate when it was assembled into a volume (status `ok`) and its
//! phase is known. Per phase the candidate with the highest phase confidence is used; ties go
//! to the series with more slices, then the lower series number, then the lower UID (so the
//! choice never depends on file order). Every other series gets a reason.

use crate::dicom::ingest::SeriesReport;
use crate::dicom::phase::Phase;

/// The decision for one series (same order as the input).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    Used,
    NotUsed(String),
}

/// Decides for every series of a study (see the module doc); `has_volume[k]` tells whether
/// series `k` was assembled.
pub fn select_series(series: &[SeriesReport], has_volume: &[bool]) -> Vec<Selection> {
    let mut out: Vec<Selection> = series
        .iter()
        .zip(has_volume)
        .map(|(s, v)| {
            if !*v || s.status != "ok" {
                Selection::NotUsed(match &s.refusal {
                    Some(r) => format!("not assembled: {r}"),
                    None => format!("not assembled (status {})", s.status),
                })
            } else if s.phase == Phase::Unknown {
                Selection::NotUsed("contrast phase could not be determined".into())
            } else {
                Selection::Used
            }
        })
        .collect();
    for (a, sa) in series.iter().enumerate() {
        if out[a] != Selection::Used {
            continue;
        }
        let better = series.iter().enumerate().find(|(b, sb)| {
            *b != a && out[*b] == Selection::Used && sb.phase == sa.phase && ranks_before(sb, sa)
        });
        if let Some((_, sb)) = better {
            out[a] = Selection::NotUsed(format!(
                "another {} series was used (series {}, phase confidence {:.2})",
                sa.phase.as_str(),
                sb.series_number.map_or("?".to_string(), |n| n.to_string()),
                sb.phase_confidence
            ));
        }
    }
    out
}

/// Whether `a` is preferred over `b` for the same phase.
fn ranks_before(a: &SeriesReport, b: &SeriesReport) -> bool {
    let key = |s: &SeriesReport| {
        (
            std::cmp::Reverse(ordered(s.phase_confidence)),
            std::cmp::Reverse(s.num_slices),
            s.series_number.unwrap_or(i64::MAX),
            s.series_uid.clone(),
            s.part,
        )
    };
    key(a) < key(b)
}

/// A total order key for a confidence in [0, 1] (NaN last).
fn ordered(x: f64) -> i64 {
    if x.is_finite() {
        (x * 1e9).round() as i64
    } else {
        i64::MIN
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(uid: &str, phase: Phase, conf: f64, slices: usize) -> SeriesReport {
        SeriesReport {
            series_uid: uid.into(),
            part: 0,
            series_number: Some(uid.len() as i64),
            description: None,
            phase,
            phase_confidence: conf,
            phase_evidence: Vec::new(),
            dims: None,
            spacing_mm: None,
            origin_lps_mm: None,
            direction: None,
            num_files: slices,
            num_slices: slices,
            transfer_syntaxes: Vec::new(),
            aorta_hu: None,
            status: "ok",
            refusal: None,
            warnings: Vec::new(),
            files: Vec::new(),
        }
    }

    #[test]
    fn one_series_per_phase_by_confidence_then_slices() {
        let s = vec![
            series("1.1", Phase::Portal, 0.7, 80),
            series("1.22", Phase::Portal, 0.9, 60),
            series("1.333", Phase::Arterial, 0.8, 80),
            series("1.4444", Phase::Unknown, 0.2, 80),
            series("1.55555", Phase::Arterial, 0.8, 90),
            series("1.666666", Phase::Delayed, 0.9, 90),
        ];
        let mut refused = series("1.7777777", Phase::NonContrast, 0.9, 3);
        refused.status = "refused";
        refused.refusal = Some("gantry tilt".into());
        let mut all = s;
        all.push(refused);
        let has = vec![true, true, true, true, false, false, false];
        let sel = select_series(&all, &has);
        assert!(matches!(&sel[0], Selection::NotUsed(r) if r.contains("another portal")));
        assert_eq!(sel[1], Selection::Used);
        // 1.55555 has more slices but no volume: 1.333 is used.
        assert_eq!(sel[2], Selection::Used);
        assert!(matches!(&sel[3], Selection::NotUsed(r) if r.contains("could not be determined")));
        assert!(matches!(&sel[4], Selection::NotUsed(r) if r.contains("not assembled")));
        assert!(matches!(&sel[5], Selection::NotUsed(_)));
        assert!(matches!(&sel[6], Selection::NotUsed(r) if r.contains("gantry tilt")));
        // With volumes everywhere, the arterial tie on confidence goes to more slices.
        let sel = select_series(&all, &[true; 7]);
        assert!(matches!(&sel[2], Selection::NotUsed(_)));
        assert_eq!(sel[4], Selection::Used);
        assert_eq!(sel[5], Selection::Used);
        assert_eq!(sel.iter().filter(|s| **s == Selection::Used).count(), 3);
    }
}
