//! The registration's spatial transformer equals PyTorch's. nephrod's engine resampler, with
//! the index-space theta that corresponds to a normalised theta_n, gives F.affine_grid
//! (align_corners=True) followed by F.grid_sample (trilinear, zeros padding) to 1e-5; its theta
//! gradient carried back to theta_n equals autograd's to 1e-4 away from the identity's kinks.
//! Golden: tests/data/register/affine_grid.json (tools/oracle/affine_grid_golden.py, torch 2.15).
//!
//! θ (index) = N_in⁻¹ · θₙ · N_out with N(size) mapping index i to 2i/(size−1) − 1 per axis
//! (x = w fastest, y = h, z = d); ∂L/∂θₙ = N_in⁻ᵀ · ∂L/∂θ · N_outᵀ on the 4×4 forms.

use nephrod::engine::{Backend, CpuBackend, Interp, Tensor};

type M4 = [[f64; 4]; 4];

fn mul(a: &M4, b: &M4) -> M4 {
    let mut c = [[0.0; 4]; 4];
    for i in 0..4 {
        for j in 0..4 {
            c[i][j] = (0..4).map(|k| a[i][k] * b[k][j]).sum();
        }
    }
    c
}

fn transpose(a: &M4) -> M4 {
    let mut t = [[0.0; 4]; 4];
    for i in 0..4 {
        for j in 0..4 {
            t[i][j] = a[j][i];
        }
    }
    t
}

/// index → normalised, for (W, H, D) sizes.
fn to_normalised(whd: [usize; 3]) -> M4 {
    let mut n = [[0.0; 4]; 4];
    for a in 0..3 {
        n[a][a] = 2.0 / (whd[a] as f64 - 1.0);
        n[a][3] = -1.0;
    }
    n[3][3] = 1.0;
    n
}

/// normalised → index.
fn to_index(whd: [usize; 3]) -> M4 {
    let mut n = [[0.0; 4]; 4];
    for a in 0..3 {
        let h = (whd[a] as f64 - 1.0) / 2.0;
        n[a][a] = h;
        n[a][3] = h;
    }
    n[3][3] = 1.0;
    n
}

fn nums(v: &serde_json::Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

#[test]
fn engine_resampler_equals_affine_grid_and_grid_sample() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/register/affine_grid.json"
    );
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let backend = CpuBackend;
    let cases = doc["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 3);
    for c in cases {
        let name = c["name"].as_str().unwrap();
        let i = nums(&c["in_dhw"]);
        let o = nums(&c["out_dhw"]);
        let in_dhw = [i[0] as usize, i[1] as usize, i[2] as usize];
        let out_dhw = [o[0] as usize, o[1] as usize, o[2] as usize];
        let in_whd = [in_dhw[2], in_dhw[1], in_dhw[0]];
        let out_whd = [out_dhw[2], out_dhw[1], out_dhw[0]];
        let mut tn = [[0.0; 4]; 4];
        for (r, row) in c["theta_n"].as_array().unwrap().iter().enumerate() {
            for (k, v) in nums(row).into_iter().enumerate() {
                tn[r][k] = v;
            }
        }
        tn[3][3] = 1.0;
        let (p, q) = (to_index(in_whd), to_normalised(out_whd));
        let t4 = mul(&mul(&p, &tn), &q);
        let theta = [t4[0], t4[1], t4[2]];

        let x: Vec<f32> = nums(&c["x"]).into_iter().map(|v| v as f32).collect();
        let x = Tensor::new([1, 2, in_dhw[0], in_dhw[1], in_dhw[2]], x).unwrap();
        let y = backend
            .resample_affine(&x, &theta, out_dhw, Interp::Trilinear)
            .unwrap();
        let want = nums(&c["y"]);
        assert_eq!(y.data().len(), want.len());
        let worst = y
            .data()
            .iter()
            .zip(&want)
            .map(|(a, b)| (*a as f64 - b).abs())
            .fold(0.0, f64::max);
        assert!(worst < 1e-5, "{name}: resample differs by {worst}");

        // At the identity every sample sits on a voxel centre, where trilinear interpolation has
        // a kink: the derivative there is one-sided and depends on which side rounding puts the
        // point, so only the forward pass is compared.
        if name.starts_with("identity") {
            continue;
        }
        let up: Vec<f32> = nums(&c["upstream"]).into_iter().map(|v| v as f32).collect();
        let up = Tensor::new([1, 2, out_dhw[0], out_dhw[1], out_dhw[2]], up).unwrap();
        let g = backend.resample_affine_grad(&x, &theta, &up).unwrap();
        let mut g4 = [[0.0; 4]; 4];
        g4[..3].copy_from_slice(&g);
        let gn = mul(&mul(&transpose(&p), &g4), &transpose(&q));
        let want_g: Vec<Vec<f64>> = c["grad_theta_n"]
            .as_array()
            .unwrap()
            .iter()
            .map(nums)
            .collect();
        let scale = want_g.iter().flatten().fold(1.0f64, |m, v| m.max(v.abs()));
        for r in 0..3 {
            for k in 0..4 {
                let d = (gn[r][k] - want_g[r][k]).abs();
                assert!(
                    d < 1e-4 * scale,
                    "{name}: dL/dθₙ[{r}][{k}] {} vs autograd {}",
                    gn[r][k],
                    want_g[r][k]
                );
            }
        }
    }
}
