//! Contrast-phase detection for the CT series of one study.
//!
//! Each series gets `non_contrast`, `arterial` (corticomedullary), `portal`
//! (nephrographic/portal-venous), `delayed` (excretory) or `unknown`, a confidence in 0..1 and
//! the evidence used. Evidence adds weight to phases:
//!
//! | evidence | weight |
//! |---|---|
//! | acquisition time − ContrastBolusStartTime: < 0 s NC; 10–50 s arterial; 50–150 s portal; ≥ 150 s delayed | 0.8 |
//! | SeriesDescription / ProtocolName keywords and abbreviations | 0.6 |
//! | aortic HU measured on the image (< 80 NC; 80–150 delayed; 150–230 portal; ≥ 230 arterial) | 0.9 / 0.5 / 0.6 / 0.6 |
//! | no ContrastBolusAgent while other series of the study have one | 0.5 (NC) |
//! | ContrastBolusAgent present | −0.5 on NC |
//! | position in the study's acquisition order (4 series: NC, arterial, portal, delayed) | 0.15 |
//!
//! The phase with the largest total wins; confidence = (winner / total) × min(1, total). The
//! aortic measurement weighs most, so the image decides when the tags are missing or disagree.
//! The aorta is found on axial series as the brightest 7 mm disc (free of bone and fat) within
//! 6 cm in front of the vertebral body's anterior edge, from 15 mm right to 45 mm left of its
//! centre (the body's central posterior bone), median over the middle slices.
//! (A renal cortex/medulla check needs kidney masks and joins with segmentation.)

use serde::Serialize;

use crate::volume::Volume;

/// The contrast phase of a CT series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    NonContrast,
    Arterial,
    Portal,
    Delayed,
    Unknown,
}

impl Phase {
    const KNOWN: [Phase; 4] = [
        Phase::NonContrast,
        Phase::Arterial,
        Phase::Portal,
        Phase::Delayed,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::NonContrast => "non_contrast",
            Phase::Arterial => "arterial",
            Phase::Portal => "portal",
            Phase::Delayed => "delayed",
            Phase::Unknown => "unknown",
        }
    }
    fn index(self) -> usize {
        match self {
            Phase::NonContrast => 0,
            Phase::Arterial => 1,
            Phase::Portal => 2,
            Phase::Delayed => 3,
            Phase::Unknown => 4,
        }
    }
}

/// What is known about one series for phase detection.
#[derive(Debug, Clone, Default)]
pub struct SeriesFacts {
    /// SeriesDescription and ProtocolName.
    pub descriptions: Vec<String>,
    pub contrast_agent: Option<String>,
    /// Seconds since midnight.
    pub contrast_start_s: Option<f64>,
    /// Seconds since midnight.
    pub acquisition_time_s: Option<f64>,
    /// For ordering within the study (date-aware when possible).
    pub acquisition_order_s: Option<f64>,
    /// Aortic HU measured on the image.
    pub aorta_hu: Option<f64>,
}

/// The decision for one series.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PhaseCall {
    pub phase: Phase,
    pub confidence: f64,
    pub evidence: Vec<String>,
}

const KEYWORDS: [(Phase, &[&str], &[&str]); 4] = [
    (
        Phase::NonContrast,
        &[
            "nc",
            "kub",
            "native",
            "nativ",
            "plain",
            "pre",
            "precontrast",
            "noncontrast",
            "unenhanced",
            "ncct",
            "wo",
            "nonenhanced",
        ],
        &[
            "non contrast",
            "without contrast",
            "w/o",
            "pre contrast",
            "non enhanced",
            "sans contraste",
        ],
    ),
    (
        Phase::Arterial,
        &[
            "art",
            "arterial",
            "arteriel",
            "cmp",
            "cortico",
            "corticomedullary",
            "angio",
            "cta",
            "early",
        ],
        &["cortico medullary", "arterial"],
    ),
    (
        Phase::Portal,
        &[
            "pv",
            "pvp",
            "portal",
            "venous",
            "ven",
            "nephro",
            "nephrographic",
            "nephrogenic",
            "np",
        ],
        &["portal venous", "nephrographic", "portalvenous"],
    ),
    (
        Phase::Delayed,
        &[
            "delay",
            "delayed",
            "excretory",
            "excr",
            "uro",
            "urogram",
            "urography",
            "urographic",
            "pyelo",
            "ctu",
        ],
        &["excretory", "delayed", "urogra"],
    ),
];

fn keyword_hits(text: &str) -> Vec<(Phase, String)> {
    let lower = text.to_ascii_lowercase();
    let spaced: String = lower
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '/' {
                c
            } else {
                ' '
            }
        })
        .collect();
    let tokens: Vec<&str> = spaced
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|t| !t.is_empty())
        .collect();
    let mut hits = Vec::new();
    for (phase, words, phrases) in KEYWORDS {
        let tok = tokens
            .iter()
            .find(|t| words.contains(t))
            .map(|t| t.to_string());
        let phr = phrases
            .iter()
            .find(|p| spaced.contains(*p))
            .map(|p| p.to_string());
        if let Some(w) = tok.or(phr) {
            hits.push((phase, w));
        }
    }
    // "non contrast" also contains "contrast": a NC phrase overrides contrast-phase tokens
    // only when they come from the same phrase, so nothing else to filter here.
    hits
}

fn delay_phase(delay_s: f64) -> Option<Phase> {
    if delay_s < 0.0 {
        Some(Phase::NonContrast)
    } else if (10.0..50.0).contains(&delay_s) {
        Some(Phase::Arterial)
    } else if (50.0..150.0).contains(&delay_s) {
        Some(Phase::Portal)
    } else if delay_s >= 150.0 {
        Some(Phase::Delayed)
    } else {
        None
    }
}

/// Detects the phase of every series of one study (same order as `series`).
pub fn detect(series: &[SeriesFacts]) -> Vec<PhaseCall> {
    let any_agent = series.iter().any(|s| s.contrast_agent.is_some());
    let mut order: Vec<(usize, f64)> = series
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.acquisition_order_s.map(|t| (i, t)))
        .collect();
    order.sort_by(|a, b| a.1.total_cmp(&b.1));
    let distinct_times = {
        let mut t: Vec<f64> = order.iter().map(|o| o.1).collect();
        t.dedup_by(|a, b| (*a - *b).abs() < 1.0);
        t.len()
    };
    series
        .iter()
        .enumerate()
        .map(|(idx, s)| {
            let mut score = [0.0f64; 5];
            let mut evidence = Vec::new();
            if let (Some(acq), Some(start)) = (s.acquisition_time_s, s.contrast_start_s) {
                let mut delay = acq - start;
                if delay < -43200.0 {
                    delay += 86400.0;
                }
                if let Some(p) = delay_phase(delay) {
                    score[p.index()] += 0.8;
                    evidence.push(format!(
                        "acquired {delay:.0} s after ContrastBolusStartTime → {}",
                        p.as_str()
                    ));
                }
            }
            for d in &s.descriptions {
                for (p, word) in keyword_hits(d) {
                    score[p.index()] += 0.6;
                    evidence.push(format!("description keyword \"{word}\" → {}", p.as_str()));
                }
            }
            if let Some(a) = s.aorta_hu {
                let (p, w) = if a < 80.0 {
                    (Phase::NonContrast, 0.9)
                } else if a < 150.0 {
                    (Phase::Delayed, 0.5)
                } else if a < 230.0 {
                    (Phase::Portal, 0.6)
                } else {
                    (Phase::Arterial, 0.6)
                };
                score[p.index()] += w;
                evidence.push(format!("aorta {a:.0} HU on the image → {}", p.as_str()));
            }
            match &s.contrast_agent {
                Some(_) => {
                    score[Phase::NonContrast.index()] -= 0.5;
                    evidence.push("ContrastBolusAgent present → not non-contrast".to_string());
                }
                None if any_agent => {
                    score[Phase::NonContrast.index()] += 0.5;
                    evidence.push(
                        "no ContrastBolusAgent while other series have one → non_contrast"
                            .to_string(),
                    );
                }
                None => {}
            }
            if distinct_times == 4 && order.len() == 4 {
                if let Some(rank) = order.iter().position(|o| o.0 == idx) {
                    let p = Phase::KNOWN[rank];
                    score[p.index()] += 0.15;
                    evidence.push(format!(
                        "acquired {} of 4 in the study → {}",
                        rank + 1,
                        p.as_str()
                    ));
                }
            }
            let total: f64 = score.iter().map(|v| v.max(0.0)).sum();
            let (best, best_score) = Phase::KNOWN.iter().map(|p| (*p, score[p.index()])).fold(
                (Phase::Unknown, 0.0),
                |acc, x| if x.1 > acc.1 { x } else { acc },
            );
            if best == Phase::Unknown || total <= 0.0 {
                return PhaseCall {
                    phase: Phase::Unknown,
                    confidence: 0.0,
                    evidence,
                };
            }
            let confidence = (best_score / total) * total.min(1.0);
            PhaseCall {
                phase: best,
                confidence: (confidence * 1000.0).round() / 1000.0,
                evidence,
            }
        })
        .collect()
}

/// Aortic attenuation (HU) measured on an axial CT volume, or `None` with no vertebra/aorta.
pub fn aorta_hu(vol: &Volume<f32>) -> Option<f64> {
    let g = vol.geometry();
    let (r, c, n) = (g.axis(0), g.axis(1), g.axis(2));
    // Axial only: i along ±x, j along ±y, k along ±z.
    if r[0].abs() < 0.9 || c[1].abs() < 0.9 || n[2].abs() < 0.9 {
        return None;
    }
    let [ni, nj, nk] = vol.dims();
    let (sx, sy) = (g.spacing_mm[0], g.spacing_mm[1]);
    let k_lo = nk / 4;
    let k_hi = (3 * nk / 4).max(k_lo + 1).min(nk);
    let step = ((k_hi - k_lo) / 20).max(1);
    // World x (L+) and y (P+) of index i and j on an axial slice, relative to index 0.
    let xw = |i: usize| r[0] * sx * i as f64;
    let yw = |j: usize| c[1] * sy * j as f64;
    let radius_mm = 7.0;
    let disc: Vec<(isize, isize)> = {
        let ri = (radius_mm / sx).ceil() as isize;
        let rj = (radius_mm / sy).ceil() as isize;
        let mut d = Vec::new();
        for dj in -rj..=rj {
            for di in -ri..=ri {
                let (dx, dy) = (di as f64 * sx, dj as f64 * sy);
                if dx * dx + dy * dy <= radius_mm * radius_mm {
                    d.push((di, dj));
                }
            }
        }
        d
    };
    let data = vol.data();
    let mut per_slice = Vec::new();
    for k in (k_lo..k_hi).step_by(step) {
        let plane = &data[k * ni * nj..(k + 1) * ni * nj];
        let (mut bx, mut by, mut bn) = (0.0, 0.0, 0usize);
        for j in 0..nj {
            for i in 0..ni {
                if plane[i + ni * j] > -300.0 {
                    bx += xw(i);
                    by += yw(j);
                    bn += 1;
                }
            }
        }
        if bn == 0 {
            continue;
        }
        let (cx, cy) = (bx / bn as f64, by / bn as f64);
        let (mut vx, mut vn) = (0.0, 0usize);
        for j in 0..nj {
            for i in 0..ni {
                let (x, y) = (xw(i), yw(j));
                if plane[i + ni * j] >= 400.0 && (x - cx).abs() < 40.0 && y > cy {
                    vx += x;
                    vn += 1;
                }
            }
        }
        if (vn as f64) * sx * sy < 50.0 {
            continue;
        }
        let spx = vx / vn as f64;
        // Anterior edge of the vertebral body (smallest y of central bone).
        let mut front = f64::INFINITY;
        for j in 0..nj {
            for i in 0..ni {
                if plane[i + ni * j] >= 400.0 && (xw(i) - spx).abs() < 15.0 && yw(j) > cy {
                    front = front.min(yw(j));
                }
            }
        }
        let mut best: Option<f64> = None;
        for j in 0..nj {
            let y = yw(j);
            if !(y >= front - 60.0 && y <= front - radius_mm - 2.0) {
                continue;
            }
            for i in 0..ni {
                let x = xw(i);
                if !(x >= spx - 15.0 && x <= spx + 45.0) {
                    continue;
                }
                let (mut sum, mut cnt, mut bone, mut fat) = (0.0f64, 0usize, 0usize, 0usize);
                for (di, dj) in &disc {
                    let (ii, jj) = (i as isize + di, j as isize + dj);
                    if ii < 0 || jj < 0 || ii >= ni as isize || jj >= nj as isize {
                        continue;
                    }
                    let v = plane[ii as usize + ni * jj as usize];
                    sum += v as f64;
                    cnt += 1;
                    bone += (v > 700.0) as usize;
                    fat += (v < -200.0) as usize;
                }
                if cnt < disc.len() || bone * 10 > cnt || fat * 10 > cnt {
                    continue;
                }
                let mean = sum / cnt as f64;
                if best.is_none_or(|b| mean > b) {
                    best = Some(mean);
                }
            }
        }
        if let Some(b) = best {
            per_slice.push(b);
        }
    }
    if per_slice.len() < 3 {
        return None;
    }
    per_slice.sort_by(|a, b| a.total_cmp(b));
    Some(per_slice[per_slice.len() / 2])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(desc: &str) -> SeriesFacts {
        SeriesFacts {
            descriptions: vec![desc.to_string()],
            ..Default::default()
        }
    }

    #[test]
    fn keywords_label_common_descriptions() {
        let calls = detect(&[
            facts("Abd NC 5mm"),
            facts("ART 1.25 mm"),
            facts("PV abdomen"),
            facts("Excretory / Uro"),
            facts("Topogram"),
        ]);
        let phases: Vec<Phase> = calls.iter().map(|c| c.phase).collect();
        assert_eq!(
            phases,
            vec![
                Phase::NonContrast,
                Phase::Arterial,
                Phase::Portal,
                Phase::Delayed,
                Phase::Unknown
            ]
        );
        assert!(calls[0].confidence > 0.5 && calls[0].confidence <= 1.0);
        assert_eq!(calls[4].confidence, 0.0);
    }

    #[test]
    fn timing_beats_a_contradicting_keyword_and_image_decides() {
        let s = SeriesFacts {
            descriptions: vec!["arterial".into()],
            contrast_agent: Some("Iohexol".into()),
            contrast_start_s: Some(1000.0),
            acquisition_time_s: Some(1090.0),
            aorta_hu: Some(180.0),
            ..Default::default()
        };
        let call = &detect(&[s])[0];
        assert_eq!(call.phase, Phase::Portal);
        assert!(
            call.confidence < 0.9,
            "disagreeing evidence lowers confidence"
        );
    }
}
