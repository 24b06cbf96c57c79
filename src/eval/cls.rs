//! Classification metrics and statistics (shared/docs/metrics.md), as scikit-learn and pROC
//! compute them.
//!
//! * Decision = the class with the largest probability (first one on ties, numpy `argmax`).
//! * Top-2 accuracy as scikit-learn's `top_k_accuracy_score`: classes ranked by score with ties
//!   going to the *later* class (a stable ascending sort, reversed).
//! * Per class: sensitivity TP/(TP+FN), specificity TN/(TN+FP), PPV TP/(TP+FP),
//!   F1 2TP/(2TP+FP+FN); 0 when the denominator is 0 (`zero_division=0`).
//! * One-vs-rest ROC AUC = Mann–Whitney U / (m·n) with ties counted ½ (midranks); macro = mean
//!   over classes (`roc_auc_score(multi_class='ovr', average='macro')`).
//! * DeLong (1988) standard error via midranks (Sun & Xu 2014), 95 % CI AUC ± Φ⁻¹(0.975)·SE
//!   clipped to [0, 1], as pROC's `ci.auc(method="delong")`.
//! * Percentile bootstrap: cases resampled with replacement (not stratified), a resample that
//!   lacks a positive or a negative case of a class is skipped for that class (counted);
//!   percentiles with numpy's default linear interpolation.
//! * Model vs reader: two-sided permutation test on per-class sensitivity and specificity; each
//!   permutation swaps the two decisions of each case with probability ½;
//!   p = (1 + #{|Δ_perm| ≥ |Δ_obs|}) / (1 + permutations). Differences are compared as exact
//!   integer counts (both sides share the denominator).

use serde::Serialize;

/// Φ⁻¹(0.975).
pub const Z_975: f64 = 1.959_963_984_540_054;

/// Index of the largest value (first on ties); NaN never wins.
pub fn argmax(p: &[f64]) -> usize {
    let mut best = 0;
    for (i, v) in p.iter().enumerate() {
        if *v > p[best] || p[best].is_nan() {
            best = i;
        }
    }
    best
}

/// Whether `truth` is among the `k` top-ranked classes of `p` (scikit-learn's tie order).
pub fn in_top_k(p: &[f64], truth: usize, k: usize) -> bool {
    let mut order: Vec<usize> = (0..p.len()).collect();
    // Descending score, ties: higher index first.
    order.sort_by(|&a, &b| p[b].total_cmp(&p[a]).then(b.cmp(&a)));
    order.iter().take(k).any(|&c| c == truth)
}

/// Midranks (1-based, ties share their mean rank) of `x`.
pub fn midranks(x: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..x.len()).collect();
    idx.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    let mut ranks = vec![0f64; x.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && x[idx[j + 1]] == x[idx[i]] {
            j += 1;
        }
        let r = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            ranks[k] = r;
        }
        i = j + 1;
    }
    ranks
}

/// AUC and its DeLong variance for scores of positives `pos` and negatives `neg`; `None`
/// when either is empty.
pub fn auc_delong(pos: &[f64], neg: &[f64]) -> Option<(f64, f64)> {
    let (m, n) = (pos.len(), neg.len());
    if m == 0 || n == 0 {
        return None;
    }
    let all: Vec<f64> = pos.iter().chain(neg).copied().collect();
    let r_all = midranks(&all);
    let r_pos = midranks(pos);
    let r_neg = midranks(neg);
    let (mf, nf) = (m as f64, n as f64);
    let auc = (r_all[..m].iter().sum::<f64>() - mf * (mf + 1.0) / 2.0) / (mf * nf);
    if m < 2 || n < 2 {
        return Some((auc, f64::NAN));
    }
    // Structural components.
    let v10: Vec<f64> = (0..m).map(|i| (r_all[i] - r_pos[i]) / nf).collect();
    let v01: Vec<f64> = (0..n)
        .map(|j| 1.0 - (r_all[m + j] - r_neg[j]) / mf)
        .collect();
    let var = |v: &[f64]| {
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (v.len() as f64 - 1.0)
    };
    Some((auc, var(&v10) / mf + var(&v01) / nf))
}

/// One-vs-rest AUC of class `c` (`None` when a side is empty).
pub fn auc_ovr(scores: &[Vec<f64>], truth: &[usize], c: usize) -> Option<f64> {
    let (pos, neg) = split(scores, truth, c);
    auc_delong(&pos, &neg).map(|(a, _)| a)
}

fn split(scores: &[Vec<f64>], truth: &[usize], c: usize) -> (Vec<f64>, Vec<f64>) {
    let mut pos = Vec::new();
    let mut neg = Vec::new();
    for (s, &t) in scores.iter().zip(truth) {
        if t == c {
            pos.push(s[c]);
        } else {
            neg.push(s[c]);
        }
    }
    (pos, neg)
}

/// numpy `percentile(x, q)` with linear interpolation (x need not be sorted).
pub fn percentile(x: &[f64], q: f64) -> f64 {
    let mut v = x.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    let pos = q / 100.0 * (v.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = (lo + 1).min(v.len() - 1);
    let t = pos - lo as f64;
    // numpy's _lerp: a + (b − a)·t, with the symmetric form for t ≥ 0.5.
    let (a, b) = (v[lo], v[hi]);
    let d = b - a;
    if t >= 0.5 {
        b - d * (1.0 - t)
    } else {
        a + d * t
    }
}

/// A small seeded PRNG (xoshiro256** seeded by SplitMix64): bootstrap and permutation draws
/// are reproducible for a seed; they are not numpy's streams.
#[derive(Debug, Clone)]
pub struct Rng([u64; 4]);

impl Rng {
    pub fn new(seed: u64) -> Self {
        let mut z = seed;
        let mut next = || {
            z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut x = z;
            x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            x ^ (x >> 31)
        };
        Rng([next(), next(), next(), next()])
    }

    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.0;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in 0..n (n > 0), unbiased (Lemire's method with rejection).
    pub fn below(&mut self, n: usize) -> usize {
        let n = n as u64;
        loop {
            let m = (self.next_u64() as u128) * (n as u128);
            let low = m as u64;
            if low >= n.wrapping_neg() % n {
                return (m >> 64) as usize;
            }
        }
    }

    pub fn coin(&mut self) -> bool {
        self.next_u64() >> 63 == 1
    }
}

/// A value with a 95 % confidence interval.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WithCi {
    pub value: f64,
    pub ci95: [f64; 2],
}

/// Percentile bootstrap CIs of the per-class and macro AUC.
#[derive(Debug, Clone, PartialEq)]
pub struct BootstrapAuc {
    /// Per class: (lower, upper, resamples used).
    pub per_class: Vec<(f64, f64, usize)>,
    pub macro_ci: (f64, f64, usize),
}

/// Bootstrap of one-vs-rest AUCs over cases (see the module doc).
pub fn bootstrap_auc(
    scores: &[Vec<f64>],
    truth: &[usize],
    classes: usize,
    resamples: usize,
    seed: u64,
) -> BootstrapAuc {
    let n = truth.len();
    let mut rng = Rng::new(seed);
    let mut per: Vec<Vec<f64>> = vec![Vec::with_capacity(resamples); classes];
    let mut macros = Vec::with_capacity(resamples);
    let mut s = Vec::with_capacity(n);
    let mut t = Vec::with_capacity(n);
    for _ in 0..resamples {
        s.clear();
        t.clear();
        for _ in 0..n {
            let i = rng.below(n);
            s.push(scores[i].clone());
            t.push(truth[i]);
        }
        let aucs: Vec<Option<f64>> = (0..classes).map(|c| auc_ovr(&s, &t, c)).collect();
        for (c, a) in aucs.iter().enumerate() {
            if let Some(a) = a {
                per[c].push(*a);
            }
        }
        if aucs.iter().all(Option::is_some) {
            macros.push(aucs.iter().flatten().sum::<f64>() / classes as f64);
        }
    }
    let ci = |v: &[f64]| (percentile(v, 2.5), percentile(v, 97.5), v.len());
    BootstrapAuc {
        per_class: per.iter().map(|v| ci(v)).collect(),
        macro_ci: ci(&macros),
    }
}

/// Counts of one class's decisions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub tp: usize,
    pub fp: usize,
    pub tn: usize,
    #[allow(clippy::struct_field_names)]
    pub fn_: usize,
}

/// Per-class counts of `decisions` against `truth`.
pub fn counts(decisions: &[usize], truth: &[usize], c: usize) -> Counts {
    let mut k = Counts::default();
    for (&d, &t) in decisions.iter().zip(truth) {
        match (t == c, d == c) {
            (true, true) => k.tp += 1,
            (true, false) => k.fn_ += 1,
            (false, true) => k.fp += 1,
            (false, false) => k.tn += 1,
        }
    }
    k
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

impl Counts {
    pub fn sensitivity(&self) -> f64 {
        ratio(self.tp, self.tp + self.fn_)
    }
    pub fn specificity(&self) -> f64 {
        ratio(self.tn, self.tn + self.fp)
    }
    pub fn ppv(&self) -> f64 {
        ratio(self.tp, self.tp + self.fp)
    }
    pub fn f1(&self) -> f64 {
        ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn_)
    }
}

/// Two-sided permutation p-values (sensitivity, specificity) of model vs reader for class `c`.
pub fn permutation_test(
    model: &[usize],
    reader: &[usize],
    truth: &[usize],
    c: usize,
    permutations: usize,
    seed: u64,
) -> (f64, f64) {
    // Per case: +1/−1/0 contribution to (model − reader) true positives (class-c cases) or
    // true negatives (other cases). Swapping a case flips the sign of its contribution.
    let mut sens = Vec::new();
    let mut spec = Vec::new();
    for ((&m, &r), &t) in model.iter().zip(reader).zip(truth) {
        if t == c {
            let d = i64::from(m == c) - i64::from(r == c);
            if d != 0 {
                sens.push(d);
            }
        } else {
            let d = i64::from(m != c) - i64::from(r != c);
            if d != 0 {
                spec.push(d);
            }
        }
    }
    let obs_sens: i64 = sens.iter().sum::<i64>().abs();
    let obs_spec: i64 = spec.iter().sum::<i64>().abs();
    let mut rng = Rng::new(seed);
    let (mut hit_sens, mut hit_spec) = (0usize, 0usize);
    for _ in 0..permutations {
        let mut a = 0i64;
        for d in &sens {
            a += if rng.coin() { -d } else { *d };
        }
        let mut b = 0i64;
        for d in &spec {
            b += if rng.coin() { -d } else { *d };
        }
        hit_sens += usize::from(a.abs() >= obs_sens);
        hit_spec += usize::from(b.abs() >= obs_spec);
    }
    let p = |h: usize| (1 + h) as f64 / (1 + permutations) as f64;
    (p(hit_sens), p(hit_spec))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_counts_ties_as_half() {
        // pos {0.5, 0.9}, neg {0.5, 0.1}: pairs (0.5,0.5)=½, (0.5,0.1)=1, (0.9,·)=1,1 → 3.5/4.
        let (a, _) = auc_delong(&[0.5, 0.9], &[0.5, 0.1]).unwrap();
        assert_eq!(a, 0.875);
        assert!(auc_delong(&[], &[0.1]).is_none());
    }

    #[test]
    fn top_k_ties_go_to_the_later_class() {
        assert!(in_top_k(&[0.5, 0.25, 0.25], 2, 2));
        assert!(!in_top_k(&[0.5, 0.25, 0.25], 1, 2));
        assert_eq!(argmax(&[0.3, 0.3, 0.1]), 0);
    }

    #[test]
    fn percentile_matches_numpy_linear() {
        // numpy.percentile([1, 2, 3, 4], [2.5, 97.5]) = [1.075, 3.925]
        assert!((percentile(&[4.0, 1.0, 3.0, 2.0], 2.5) - 1.075).abs() < 1e-15);
        assert!((percentile(&[4.0, 1.0, 3.0, 2.0], 97.5) - 3.925).abs() < 1e-15);
    }

    #[test]
    fn rng_below_is_in_range_and_uniform_enough() {
        let mut r = Rng::new(7);
        let mut hist = [0usize; 5];
        for _ in 0..50_000 {
            hist[r.below(5)] += 1;
        }
        for h in hist {
            assert!((9_000..11_000).contains(&h), "{hist:?}");
        }
    }
}
