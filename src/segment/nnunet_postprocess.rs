//! nnU-Net's own post-processing (shared/docs/nnunet-inference.md §7): each
//! [`KeepLargestComponent`] rule, in order, keeps only the largest 26-connected component(s)
//! of the union of its labels and sets the rest of that union to background (0), exactly as
//! `remove_all_but_largest_component_from_segmentation` with skimage's full connectivity.
//! Connectivity is symmetric in the axes, so any C-order axis order of the label map works.

use crate::segment::plan::KeepLargestComponent;
use crate::segment::postprocess::components_26;

/// Voxels set to background by each rule, in rule order.
pub type RuleReport = Vec<usize>;

/// Applies `rules` in place to `labels` (C order, `dims`).
pub fn apply_keep_largest(
    labels: &mut [u8],
    dims: [usize; 3],
    rules: &[KeepLargestComponent],
) -> RuleReport {
    rules
        .iter()
        .map(|rule| keep_largest(labels, dims, &rule.labels))
        .collect()
}

fn keep_largest(labels: &mut [u8], dims: [usize; 3], selected: &[u16]) -> usize {
    let mask: Vec<bool> = labels
        .iter()
        .map(|&l| selected.contains(&u16::from(l)))
        .collect();
    let (ids, sizes) = components_26(&mask, dims);
    let Some(&largest) = sizes.iter().max() else {
        return 0;
    };
    let mut removed = 0;
    for (l, id) in labels.iter_mut().zip(&ids) {
        if *id != 0 && sizes[*id as usize - 1] != largest {
            *l = 0;
            removed += 1;
        }
    }
    removed
}
