//! Reading a phantom's truth.json geometry in tests: 4×4 matrices (row-major, homogeneous, LPS
//! mm), kidney centres, and applying a matrix to a point. Include with
//! `#[path = "common/truth_geometry.rs"] mod truth_geometry;`.

#![allow(dead_code)]

use serde_json::Value;

/// A JSON array of numbers.
pub fn numbers(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

/// A 4×4 matrix given as rows (`[[…], …]`), flattened row-major.
pub fn matrix_rows(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().flat_map(numbers).collect()
}

/// `m` (16 numbers, row-major) applied to the point `p`.
pub fn apply(m: &[f64], p: &[f64]) -> [f64; 3] {
    std::array::from_fn(|r| (0..3).map(|c| m[4 * r + c] * p[c]).sum::<f64>() + m[4 * r + 3])
}

pub fn dist(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).powi(2))
        .sum::<f64>()
        .sqrt()
}

/// Each truth kidney's side and centre (reference-phase LPS mm).
pub fn kidney_centres(truth: &Value) -> Vec<(String, Vec<f64>)> {
    truth["kidneys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["side"].as_str().unwrap().to_string(),
                numbers(&k["centre_lps_mm"]),
            )
        })
        .collect()
}

/// The largest distance, over the truth kidney centres, between where `estimate` and `truth`
/// map them.
pub fn max_centre_error(truth: &Value, estimate: &[f64], true_matrix: &[f64]) -> f64 {
    kidney_centres(truth)
        .iter()
        .map(|(_, c)| dist(&apply(estimate, c), &apply(true_matrix, c)))
        .fold(0.0, f64::max)
}
