//! Post-processing of KiTS label maps (seed 004, Golts et al. §3.5; shared/docs/method.md C.5).
//!
//! Labels: 0 background, 1 kidney, 2 tumour, 3 cyst, on a C-order (D, H, W) grid (any axis
//! order works: the rules use voxel neighbourhoods only). The paper leaves the connectivity and
//! the "slight" dilation open; nephrod uses, and states:
//! * connected components with 26-connectivity (skimage's full connectivity, as nnU-Net's own
//!   `remove_all_but_largest_component_from_segmentation`);
//! * dilation by one voxel with the full 3×3×3 structuring element;
//! * rule (a) first: every component of tumour ∪ cyst whose dilated mask contains no kidney
//!   voxel becomes background;
//! * then rule (b): kidney components whose size is strictly smaller than the third largest
//!   kidney component take the most frequent label among their dilated surroundings (the
//!   dilated mask minus the component; ties → the smallest label value). With fewer than
//!   three kidney components nothing changes.
//!
//! Voxel spacing is not used: the rules count voxels.

/// What [`postprocess_kits`] changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PostprocessReport {
    /// Tumour/cyst components set to background, and their voxels.
    pub masses_removed: usize,
    pub mass_voxels_removed: usize,
    /// Kidney fragments relabelled, and their voxels.
    pub kidney_fragments_relabelled: usize,
    pub kidney_voxels_relabelled: usize,
}

/// Connected components of `mask` (26-connectivity): a component id per voxel (0 = not in the
/// mask, 1… in raster order of each component's first voxel) and the component sizes
/// (`sizes[id − 1]`).
pub fn components_26(mask: &[bool], dims: [usize; 3]) -> (Vec<u32>, Vec<usize>) {
    let [nd, nh, nw] = dims;
    let n = nd * nh * nw;
    let mut parent: Vec<u32> = (0..n as u32).collect();
    fn find(p: &mut [u32], mut x: u32) -> u32 {
        while p[x as usize] != x {
            let g = p[p[x as usize] as usize];
            p[x as usize] = g;
            x = g;
        }
        x
    }
    let idx = |d: usize, h: usize, w: usize| (d * nh + h) * nw + w;
    for d in 0..nd {
        for h in 0..nh {
            for w in 0..nw {
                let i = idx(d, h, w);
                if !mask[i] {
                    continue;
                }
                // Earlier neighbours in raster order (13 of the 26).
                for dd in -1i64..=0 {
                    for dh in -1i64..=1 {
                        for dw in -1i64..=1 {
                            if (dd, dh, dw) >= (0, 0, 0) {
                                continue;
                            }
                            let (z, y, x) = (d as i64 + dd, h as i64 + dh, w as i64 + dw);
                            if z < 0 || y < 0 || x < 0 || y >= nh as i64 || x >= nw as i64 {
                                continue;
                            }
                            let j = idx(z as usize, y as usize, x as usize);
                            if mask[j] {
                                let (a, b) =
                                    (find(&mut parent, i as u32), find(&mut parent, j as u32));
                                if a != b {
                                    let (lo, hi) = if a < b { (a, b) } else { (b, a) };
                                    parent[hi as usize] = lo;
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    let mut label = vec![0u32; n];
    let mut root_id = std::collections::HashMap::new();
    let mut sizes = Vec::new();
    for i in 0..n {
        if !mask[i] {
            continue;
        }
        let r = find(&mut parent, i as u32);
        let id = *root_id.entry(r).or_insert_with(|| {
            sizes.push(0);
            sizes.len() as u32
        });
        label[i] = id;
        sizes[id as usize - 1] += 1;
    }
    (label, sizes)
}

/// The voxels of every component (`members[id − 1]`, ascending flat indices).
fn members(comp: &[u32], count: usize) -> Vec<Vec<usize>> {
    let mut m = vec![Vec::new(); count];
    for (i, c) in comp.iter().enumerate() {
        if *c > 0 {
            m[*c as usize - 1].push(i);
        }
    }
    m
}

/// The one-voxel (3×3×3) dilation ring of component `id` (its voxels `inside`): the dilated
/// mask minus the component, as ascending flat indices.
fn ring(comp: &[u32], id: u32, inside: &[usize], dims: [usize; 3]) -> Vec<usize> {
    let [nd, nh, nw] = dims;
    let mut ring = std::collections::BTreeSet::new();
    for &i in inside {
        let (d, h, w) = (i / (nh * nw), (i / nw) % nh, i % nw);
        for z in d.saturating_sub(1)..(d + 2).min(nd) {
            for y in h.saturating_sub(1)..(h + 2).min(nh) {
                for x in w.saturating_sub(1)..(w + 2).min(nw) {
                    let j = (z * nh + y) * nw + x;
                    if comp[j] != id {
                        ring.insert(j);
                    }
                }
            }
        }
    }
    ring.into_iter().collect()
}

/// Applies the seed-004 rules in place (see the module doc).
pub fn postprocess_kits(labels: &mut [u8], dims: [usize; 3]) -> PostprocessReport {
    let mut report = PostprocessReport::default();
    if labels.len() != dims.iter().product::<usize>() {
        return report;
    }
    // (a) masses not touching a kidney → background.
    let masses: Vec<bool> = labels.iter().map(|l| *l == 2 || *l == 3).collect();
    let (comp, sizes) = components_26(&masses, dims);
    for (k, inside) in members(&comp, sizes.len()).into_iter().enumerate() {
        let around = ring(&comp, k as u32 + 1, &inside, dims);
        if !around.iter().any(|&j| labels[j] == 1) {
            for i in &inside {
                labels[*i] = 0;
            }
            report.masses_removed += 1;
            report.mass_voxels_removed += inside.len();
        }
    }
    // (b) kidney fragments smaller than the third largest → majority of their surroundings.
    let kidney: Vec<bool> = labels.iter().map(|l| *l == 1).collect();
    let (comp, sizes) = components_26(&kidney, dims);
    if sizes.len() >= 3 {
        let mut sorted = sizes.clone();
        sorted.sort_unstable_by(|a, b| b.cmp(a));
        let third = sorted[2];
        for (k, inside) in members(&comp, sizes.len()).into_iter().enumerate() {
            if sizes[k] >= third {
                continue;
            }
            let around = ring(&comp, k as u32 + 1, &inside, dims);
            let mut counts = [0usize; 256];
            for &j in &around {
                counts[labels[j] as usize] += 1;
            }
            // Most frequent, ties → smallest label.
            let mut best = 0usize;
            for l in 1..256 {
                if counts[l] > counts[best] {
                    best = l;
                }
            }
            for i in &inside {
                labels[*i] = best as u8;
            }
            report.kidney_fragments_relabelled += 1;
            report.kidney_voxels_relabelled += inside.len();
        }
    }
    report
}
