//! The CUDA kernel sources (`kernels/*.cu`, embedded) and the signature of every kernel in
//! them, as the host sees it. Both device executors — the CUDA driver and the CPU emulation
//! used in tests — check each launch's arguments against these signatures, and a unit test
//! checks the signatures against the `.cu` sources, so a launch cannot silently pass an
//! argument of the wrong kind or in the wrong place.

/// One `kernels/*.cu` file: an NVRTC program, one module on the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Module {
    Conv3d,
    NormAct,
    Elementwise,
    Resample,
}

impl Module {
    pub const ALL: [Module; 4] = [
        Module::Conv3d,
        Module::NormAct,
        Module::Elementwise,
        Module::Resample,
    ];

    /// File name under `kernels/`.
    pub fn file_name(self) -> &'static str {
        match self {
            Module::Conv3d => "conv3d.cu",
            Module::NormAct => "norm_act.cu",
            Module::Elementwise => "elementwise.cu",
            Module::Resample => "resample.cu",
        }
    }

    /// The embedded CUDA C++ source.
    pub fn source(self) -> &'static str {
        match self {
            Module::Conv3d => include_str!("../../../kernels/conv3d.cu"),
            Module::NormAct => include_str!("../../../kernels/norm_act.cu"),
            Module::Elementwise => include_str!("../../../kernels/elementwise.cu"),
            Module::Resample => include_str!("../../../kernels/resample.cu"),
        }
    }

    /// The kernels this module defines.
    pub fn kernels(self) -> impl Iterator<Item = &'static KernelSig> {
        ALL_KERNELS.iter().filter(move |k| k.module == self)
    }
}

/// NVRTC options for every module besides `--gpu-architecture` (kernels/nvrtc_options.txt,
/// shared with tools/cuda/check_kernels.py).
pub fn nvrtc_options() -> Vec<&'static str> {
    include_str!("../../../kernels/nvrtc_options.txt")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

/// The C type of one kernel parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Param {
    /// `const float*`
    ConstF32Ptr,
    /// `float*`
    F32Ptr,
    /// `const double*`
    ConstF64Ptr,
    /// `double*`
    F64Ptr,
    /// `unsigned int*`
    U32Ptr,
    /// `const unsigned short*` — IEEE binary16 bits (f16 storage)
    ConstF16BitsPtr,
    /// `int`
    I32,
    /// `long long`
    I64,
    /// `float`
    F32,
}

/// A kernel's name, module and parameter list (the `extern "C" __global__` declaration).
#[derive(Debug, PartialEq, Eq)]
pub struct KernelSig {
    pub module: Module,
    pub name: &'static str,
    pub params: &'static [Param],
}

use Param::*;

const CONV_PARAMS: &[Param] = &[
    ConstF32Ptr,
    ConstF32Ptr,
    ConstF32Ptr,
    F32Ptr,
    I32,
    I32,
    I32,
    I32,
    I32,
    I32,
    I32,
    I32,
    I32,
    I32,
    I32,
    I32,
    I32,
    I32,
    I32,
    I32,
    I32,
];

pub const CONV3D: KernelSig = KernelSig {
    module: Module::Conv3d,
    name: "conv3d_f32",
    params: CONV_PARAMS,
};
pub const CONV_TRANSPOSE3D: KernelSig = KernelSig {
    module: Module::Conv3d,
    name: "conv_transpose3d_f32",
    params: CONV_PARAMS,
};
const CONV_F16W_PARAMS: &[Param] = &[
    ConstF32Ptr,
    ConstF16BitsPtr,
    ConstF32Ptr,
    F32Ptr,
    I32,
    I32,
    I32,
    I32,
    I32,
    I32,
    I32,
    I32,
    I32,
    I32,
    I32,
    I32,
    I32,
    I32,
    I32,
    I32,
    I32,
];

pub const CONV3D_F16W: KernelSig = KernelSig {
    module: Module::Conv3d,
    name: "conv3d_f16w",
    params: CONV_F16W_PARAMS,
};
pub const CONV_TRANSPOSE3D_F16W: KernelSig = KernelSig {
    module: Module::Conv3d,
    name: "conv_transpose3d_f16w",
    params: CONV_F16W_PARAMS,
};
pub const NORM_STATS: KernelSig = KernelSig {
    module: Module::NormAct,
    name: "instance_norm_stats_f32",
    params: &[ConstF32Ptr, F32Ptr, I64, I32],
};
pub const NORM_APPLY: KernelSig = KernelSig {
    module: Module::NormAct,
    name: "instance_norm_apply_f32",
    params: &[
        ConstF32Ptr,
        ConstF32Ptr,
        ConstF32Ptr,
        ConstF32Ptr,
        F32Ptr,
        I64,
        I32,
        I32,
        F32,
        I32,
        F32,
    ],
};
pub const ADD: KernelSig = KernelSig {
    module: Module::Elementwise,
    name: "add_f32",
    params: &[ConstF32Ptr, ConstF32Ptr, F32Ptr, I64],
};
pub const SCALE: KernelSig = KernelSig {
    module: Module::Elementwise,
    name: "scale_f32",
    params: &[ConstF32Ptr, F32, F32Ptr, I64],
};
pub const SIGMOID: KernelSig = KernelSig {
    module: Module::Elementwise,
    name: "sigmoid_f32",
    params: &[ConstF32Ptr, F32Ptr, I64],
};
pub const SOFTMAX_CHANNELS: KernelSig = KernelSig {
    module: Module::Elementwise,
    name: "softmax_channels_f32",
    params: &[ConstF32Ptr, F32Ptr, I32, I64, I64],
};
pub const ARGMAX_CHANNELS: KernelSig = KernelSig {
    module: Module::Elementwise,
    name: "argmax_channels_f32",
    params: &[ConstF32Ptr, U32Ptr, I32, I64, I64],
};
pub const COPY_ROWS: KernelSig = KernelSig {
    module: Module::Elementwise,
    name: "copy_rows_f32",
    params: &[ConstF32Ptr, F32Ptr, I64, I64, I64, I64],
};
pub const ACCUMULATE_PATCH: KernelSig = KernelSig {
    module: Module::Elementwise,
    name: "accumulate_patch_f32",
    params: &[
        F32Ptr,
        F32Ptr,
        ConstF32Ptr,
        ConstF32Ptr,
        I32,
        I32,
        I32,
        I32,
        I32,
        I32,
        I32,
        I32,
        I32,
        I32,
    ],
};
pub const RESAMPLE: KernelSig = KernelSig {
    module: Module::Resample,
    name: "resample_affine_f32",
    params: &[
        ConstF32Ptr,
        ConstF64Ptr,
        F32Ptr,
        I32,
        I32,
        I32,
        I32,
        I32,
        I32,
        I32,
    ],
};
pub const RESAMPLE_GRAD: KernelSig = KernelSig {
    module: Module::Resample,
    name: "resample_affine_grad_f32",
    params: &[
        ConstF32Ptr,
        ConstF64Ptr,
        ConstF32Ptr,
        F64Ptr,
        I32,
        I32,
        I32,
        I32,
        I32,
        I32,
        I64,
    ],
};

/// Every kernel of every module.
pub static ALL_KERNELS: [KernelSig; 15] = [
    CONV3D,
    CONV_TRANSPOSE3D,
    CONV3D_F16W,
    CONV_TRANSPOSE3D_F16W,
    NORM_STATS,
    NORM_APPLY,
    ADD,
    SCALE,
    SIGMOID,
    SOFTMAX_CHANNELS,
    ARGMAX_CHANNELS,
    COPY_ROWS,
    ACCUMULATE_PATCH,
    RESAMPLE,
    RESAMPLE_GRAD,
];

/// Parses the `extern "C" __global__` declarations of a `.cu` source into (name, params).
/// Only the C types nephrod's kernels use are recognised; anything else is an error naming it.
pub fn parse_declarations(source: &str) -> Result<Vec<(String, Vec<Param>)>, String> {
    let mut out = Vec::new();
    let marker = "extern \"C\" __global__ void";
    let mut rest = source;
    while let Some(at) = rest.find(marker) {
        rest = &rest[at + marker.len()..];
        let open = rest.find('(').ok_or("declaration without '('")?;
        let mut head = rest[..open].trim();
        if head.starts_with("__launch_bounds__") {
            // `__launch_bounds__(N) name(` — the first '(' was the attribute's.
            let close = rest.find(')').ok_or("unclosed __launch_bounds__")?;
            rest = &rest[close + 1..];
            let open2 = rest.find('(').ok_or("declaration without '('")?;
            head = rest[..open2].trim();
            rest = &rest[open2..];
        } else {
            rest = &rest[open..];
        }
        let name = head.to_string();
        let close = rest.find(')').ok_or("unclosed parameter list")?;
        let list = &rest[1..close];
        rest = &rest[close..];
        let mut params = Vec::new();
        for p in list.split(',') {
            let words: Vec<&str> = p
                .split(|c: char| c.is_whitespace() || c == '*')
                .filter(|w| !w.is_empty() && *w != "__restrict__")
                .collect();
            let is_ptr = p.contains('*');
            let is_const = words.first() == Some(&"const");
            let ty: Vec<&str> = words
                .iter()
                .copied()
                .filter(|w| *w != "const")
                .take(words.len().saturating_sub(1 + usize::from(is_const)))
                .collect();
            let param = match (ty.join(" ").as_str(), is_ptr, is_const) {
                ("float", true, true) => ConstF32Ptr,
                ("float", true, false) => F32Ptr,
                ("double", true, true) => ConstF64Ptr,
                ("double", true, false) => F64Ptr,
                ("unsigned int", true, false) => U32Ptr,
                ("unsigned short", true, true) => ConstF16BitsPtr,
                ("int", false, _) => I32,
                ("long long", false, _) => I64,
                ("float", false, _) => F32,
                other => return Err(format!("{name}: unrecognised parameter {p:?} ({other:?})")),
            };
            params.push(param);
        }
        out.push((name, params));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_match_the_sources() {
        for module in Module::ALL {
            let declared = parse_declarations(module.source()).unwrap();
            let mut want: Vec<(String, Vec<Param>)> = module
                .kernels()
                .map(|k| (k.name.to_string(), k.params.to_vec()))
                .collect();
            let mut got = declared.clone();
            want.sort_by(|a, b| a.0.cmp(&b.0));
            got.sort_by(|a, b| a.0.cmp(&b.0));
            assert_eq!(got, want, "{}", module.file_name());
        }
    }

    #[test]
    fn parser_reads_types_and_rejects_unknown_ones() {
        let src = "extern \"C\" __global__ void __launch_bounds__(256) k(const float *__restrict__ a, \
                   float *b, const double* t, double *p, unsigned int *o, int n, long long m, float s) {}";
        let got = parse_declarations(src).unwrap();
        assert_eq!(
            got,
            vec![(
                "k".to_string(),
                vec![
                    ConstF32Ptr,
                    F32Ptr,
                    ConstF64Ptr,
                    F64Ptr,
                    U32Ptr,
                    I32,
                    I64,
                    F32
                ]
            )]
        );
        assert!(parse_declarations("extern \"C\" __global__ void k(short x) {}").is_err());
    }

    #[test]
    fn options_are_read() {
        assert!(nvrtc_options().contains(&"--std=c++17"));
    }
}
