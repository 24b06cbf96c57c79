//! The renal-mass classifier network (shared/docs/method.md A.3): torchvision ResNet-18/34/50/101
//! in candle, with an optional 1×1 convolution (3→3 channels, with bias) applied before `conv1`
//! and `fc` replaced by a `num_classes`-way head; plus Grad-CAM on the output of `layer4`.
//!
//! # Invariants
//! * Weights use torchvision's state-dict names ([`ResNet::expected_tensors`]); a file is loaded
//!   only if it holds every expected tensor with the expected shape, in F16 or F32, and nothing
//!   else (`*.num_batches_tracked` is ignored). F16 is widened to f32 once, at load.
//! * Inference only: BatchNorm uses running statistics (folded into the convolutions, see
//!   [`super::resnet_blocks`]). All computation is f32 on the CPU.
//! * Images are N×3×H×W row-major f32 (W fastest), the three CT phases as channels, any H, W ≥ 1
//!   (224×224 in the seed paper). Max-pool pads with −∞; the head averages layer4 over space.
//! * Tested equal to torchvision 0.29.2 (tests/classify_resnet.rs, goldens from
//!   tools/oracle/classifier_golden.py): logits within 1e-4 absolute for all four depths.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Tensor, Var};
use serde::{Deserialize, Serialize};

use super::error::ClassifyError;
use super::grad_cam::{cam_from_gradients, GradCam};
use super::resnet_blocks::{layout, max_pool_3x3_s2_p1, Block, ConvBn, ConvBnSpec};

/// The ResNet depths torchvision defines with `BasicBlock` (18, 34) or `Bottleneck` (50, 101).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResNetDepth {
    ResNet18,
    ResNet34,
    ResNet50,
    ResNet101,
}

impl ResNetDepth {
    /// Residual blocks in layer1..layer4.
    pub fn blocks_per_layer(self) -> [usize; 4] {
        match self {
            ResNetDepth::ResNet18 => [2, 2, 2, 2],
            ResNetDepth::ResNet34 | ResNetDepth::ResNet50 => [3, 4, 6, 3],
            ResNetDepth::ResNet101 => [3, 4, 23, 3],
        }
    }

    /// `Bottleneck` (expansion 4) rather than `BasicBlock`.
    pub fn is_bottleneck(self) -> bool {
        matches!(self, ResNetDepth::ResNet50 | ResNetDepth::ResNet101)
    }

    /// Channels of layer4's output (= `fc` input features): 512 or 2048.
    pub fn feature_channels(self) -> usize {
        if self.is_bottleneck() {
            2048
        } else {
            512
        }
    }
}

/// What network to build.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResNetConfig {
    pub depth: ResNetDepth,
    /// Outputs of the `fc` head (5 in the seed paper: ccRCC, pRCC, chRCC, oncocytoma, AML).
    pub num_classes: usize,
    /// Whether the 1×1 3→3 convolution with bias (`input_conv.*`) precedes `conv1`.
    pub input_conv: bool,
}

impl ResNetConfig {
    /// The seed paper's network: ResNet-101, 5 classes, input convolution on.
    pub fn seed_paper() -> Self {
        ResNetConfig {
            depth: ResNetDepth::ResNet101,
            num_classes: 5,
            input_conv: true,
        }
    }
}

/// A loaded classifier network (f32, CPU).
#[derive(Debug, Clone)]
pub struct ResNet {
    config: ResNetConfig,
    /// `[3, 3, 1, 1]` weight and `[1, 3, 1, 1]` bias of the input convolution.
    input_conv: Option<(Tensor, Tensor)>,
    stem: ConvBn,
    layers: Vec<Vec<Block>>,
    /// `fc.weight` transposed: `[C, num_classes]`.
    fc_weight_t: Tensor,
    /// `fc.bias`: `[1, num_classes]`.
    fc_bias: Tensor,
    device: Device,
}

/// Tensors read from the file, as f32 values keyed by name.
struct Loaded<'a> {
    path: &'a Path,
    values: BTreeMap<String, Vec<f32>>,
}

impl Loaded<'_> {
    fn get(&self, name: &str) -> Result<&[f32], ClassifyError> {
        self.values
            .get(name)
            .map(Vec::as_slice)
            .ok_or_else(|| ClassifyError::MissingTensor {
                path: self.path.to_path_buf(),
                name: name.to_string(),
            })
    }

    fn conv_bn(&self, spec: &ConvBnSpec, device: &Device) -> Result<ConvBn, ClassifyError> {
        let w = self.get(&format!("{}.weight", spec.conv))?;
        let bn = |p: &str| self.get(&format!("{}.{p}", spec.bn));
        let stats = [
            bn("weight")?,
            bn("bias")?,
            bn("running_mean")?,
            bn("running_var")?,
        ];
        ConvBn::fold(spec, w, stats, device)
    }
}

impl ResNet {
    /// The configuration this network was built from.
    pub fn config(&self) -> &ResNetConfig {
        &self.config
    }

    /// The state-dict names and shapes this config needs, in forward order: `input_conv.*` (when
    /// on), `conv1`/`bn1`, the blocks of layer1..layer4, `fc.weight`, `fc.bias`.
    pub fn expected_tensors(config: &ResNetConfig) -> Vec<(String, Vec<usize>)> {
        let lay = layout(config.depth);
        let mut v = Vec::new();
        if config.input_conv {
            v.push(("input_conv.weight".to_string(), vec![3, 3, 1, 1]));
            v.push(("input_conv.bias".to_string(), vec![3]));
        }
        v.extend(lay.stem.tensors());
        for block in lay.layers.iter().flatten() {
            for c in block.convs.iter().chain(&block.downsample) {
                v.extend(c.tensors());
            }
        }
        v.push((
            "fc.weight".to_string(),
            vec![config.num_classes, lay.feature_channels],
        ));
        v.push(("fc.bias".to_string(), vec![config.num_classes]));
        v
    }

    /// Loads torchvision state-dict tensors from a memory-mapped safetensors file (F16 or F32;
    /// F16 widened to f32 once). Every expected tensor must exist with the right shape; any other
    /// tensor except `*.num_batches_tracked` is an error. Errors name the file and the tensor.
    pub fn load_safetensors(path: &Path, config: &ResNetConfig) -> Result<Self, ClassifyError> {
        if config.num_classes == 0 {
            return Err(ClassifyError::Config {
                reason: "num_classes must be at least 1".into(),
            });
        }
        // SAFETY: the mapping is read-only and only read while this function runs: every tensor
        // is copied into candle's own storage by `load`, and the map is dropped on return. As for
        // any memory map, the file must not be truncated by another process meanwhile.
        let st = unsafe { MmapedSafetensors::new(path) }.map_err(|source| {
            ClassifyError::OpenWeights {
                path: path.to_path_buf(),
                source: Box::new(source),
            }
        })?;
        let expected = Self::expected_tensors(config);
        let wanted: BTreeSet<&str> = expected.iter().map(|(n, _)| n.as_str()).collect();
        let present: BTreeMap<String, Vec<usize>> = st
            .tensors()
            .into_iter()
            .map(|(name, view)| (name, view.shape().to_vec()))
            .collect();
        for name in present.keys() {
            if !wanted.contains(name.as_str()) && !name.ends_with(".num_batches_tracked") {
                return Err(ClassifyError::UnexpectedTensor {
                    path: path.to_path_buf(),
                    name: name.clone(),
                });
            }
        }
        let device = Device::Cpu;
        let mut values = BTreeMap::new();
        for (name, shape) in &expected {
            let found = present
                .get(name)
                .ok_or_else(|| ClassifyError::MissingTensor {
                    path: path.to_path_buf(),
                    name: name.clone(),
                })?;
            if found != shape {
                return Err(ClassifyError::TensorShape {
                    path: path.to_path_buf(),
                    name: name.clone(),
                    expected: shape.clone(),
                    found: found.clone(),
                });
            }
            let read_err = |source| ClassifyError::ReadTensor {
                path: path.to_path_buf(),
                name: name.clone(),
                source: Box::new(source),
            };
            let t = st.load(name, &device).map_err(read_err)?;
            if !matches!(t.dtype(), DType::F16 | DType::F32) {
                return Err(ClassifyError::TensorDtype {
                    path: path.to_path_buf(),
                    name: name.clone(),
                    dtype: t.dtype().as_str().to_uppercase(),
                });
            }
            let v = t
                .to_dtype(DType::F32)
                .and_then(|t| t.flatten_all())
                .and_then(|t| t.to_vec1::<f32>())
                .map_err(read_err)?;
            values.insert(name.clone(), v);
        }
        drop(st);
        Self::from_loaded(&Loaded { path, values }, config, device)
    }

    fn from_loaded(
        l: &Loaded<'_>,
        config: &ResNetConfig,
        device: Device,
    ) -> Result<Self, ClassifyError> {
        let err = ClassifyError::compute("load");
        let input_conv = if config.input_conv {
            let w = Tensor::from_slice(l.get("input_conv.weight")?, (3, 3, 1, 1), &device);
            let b = Tensor::from_slice(l.get("input_conv.bias")?, (1, 3, 1, 1), &device);
            Some((w.map_err(err)?, b.map_err(ClassifyError::compute("load"))?))
        } else {
            None
        };
        let lay = layout(config.depth);
        let stem = l.conv_bn(&lay.stem, &device)?;
        let mut layers = Vec::new();
        for specs in &lay.layers {
            let mut blocks = Vec::new();
            for s in specs {
                let convs = s
                    .convs
                    .iter()
                    .map(|c| l.conv_bn(c, &device))
                    .collect::<Result<Vec<_>, _>>()?;
                let downsample = match &s.downsample {
                    Some(d) => Some(l.conv_bn(d, &device)?),
                    None => None,
                };
                blocks.push(Block { convs, downsample });
            }
            layers.push(blocks);
        }
        let k = config.num_classes;
        let c = lay.feature_channels;
        let fc_weight_t = Tensor::from_slice(l.get("fc.weight")?, (k, c), &device)
            .and_then(|t| t.t())
            .and_then(|t| t.contiguous())
            .map_err(ClassifyError::compute("load"))?;
        let fc_bias = Tensor::from_slice(l.get("fc.bias")?, (1, k), &device)
            .map_err(ClassifyError::compute("load"))?;
        Ok(ResNet {
            config: config.clone(),
            input_conv,
            stem,
            layers,
            fc_weight_t,
            fc_bias,
            device,
        })
    }

    /// `fc.weight` as loaded: `num_classes` rows of `feature_channels` values.
    pub fn fc_weight(&self) -> Result<Vec<Vec<f32>>, ClassifyError> {
        self.fc_weight_t
            .t()
            .and_then(|t| t.to_vec2::<f32>())
            .map_err(ClassifyError::compute("fc_weight"))
    }

    fn input_tensor(
        &self,
        images: &[f32],
        n: usize,
        h: usize,
        w: usize,
    ) -> Result<Tensor, ClassifyError> {
        let bad = ClassifyError::InputShape {
            len: images.len(),
            n,
            h,
            w,
        };
        let len = n
            .checked_mul(3)
            .and_then(|v| v.checked_mul(h))
            .and_then(|v| v.checked_mul(w));
        if n == 0 || h == 0 || w == 0 || len != Some(images.len()) {
            return Err(bad);
        }
        Tensor::from_slice(images, (n, 3, h, w), &self.device)
            .map_err(ClassifyError::compute("input"))
    }

    /// `[N, 3, H, W]` → layer4 output `[N, C, ⌈…⌉, ⌈…⌉]` (H/32 rounded up for 224: 7×7).
    fn trunk(&self, x: &Tensor) -> Result<Tensor, ClassifyError> {
        let mut x = match &self.input_conv {
            Some((w, b)) => x
                .conv2d(w, 0, 1, 1, 1)
                .and_then(|y| y.broadcast_add(b))
                .map_err(ClassifyError::compute("input_conv"))?,
            None => x.clone(),
        };
        x = self.stem.forward(&x)?; // [N, 64, H/2, W/2]
        x = x.relu().map_err(ClassifyError::compute("relu"))?;
        x = max_pool_3x3_s2_p1(&x)?; // [N, 64, H/4, W/4]
        for layer in &self.layers {
            for block in layer {
                x = block.forward(&x)?;
            }
        }
        Ok(x) // [N, C, H/32, W/32]
    }

    /// Average pool over space and `fc`: `[N, C, h, w]` → `[N, num_classes]`.
    fn head(&self, features: &Tensor) -> Result<Tensor, ClassifyError> {
        features
            .mean((2, 3))
            .and_then(|p| p.matmul(&self.fc_weight_t))
            .and_then(|y| y.broadcast_add(&self.fc_bias))
            .map_err(ClassifyError::compute("head"))
    }

    /// images: N×3×H×W row-major f32. Returns N rows of `num_classes` logits.
    pub fn logits(
        &self,
        images: &[f32],
        n: usize,
        h: usize,
        w: usize,
    ) -> Result<Vec<Vec<f32>>, ClassifyError> {
        let x = self.input_tensor(images, n, h, w)?;
        let f = self.trunk(&x)?;
        self.head(&f)?
            .to_vec2::<f32>()
            .map_err(ClassifyError::compute("logits"))
    }

    /// layer4's output for N×3×H×W images: the values (N×C×h×w row-major) and `[N, C, h, w]`.
    pub fn layer4(
        &self,
        images: &[f32],
        n: usize,
        h: usize,
        w: usize,
    ) -> Result<(Vec<f32>, [usize; 4]), ClassifyError> {
        let x = self.input_tensor(images, n, h, w)?;
        let f = self.trunk(&x)?;
        let (a, b, c, d) = f.dims4().map_err(ClassifyError::compute("layer4"))?;
        let v = f
            .flatten_all()
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(ClassifyError::compute("layer4"))?;
        Ok((v, [a, b, c, d]))
    }

    /// Grad-CAM (Selvaraju et al.) on the output of layer4 for `class` of ONE image (3×H×W).
    /// The gradient ∂logit_class/∂A comes from candle's autograd: the trunk runs untracked, its
    /// output becomes a [`Var`], the head runs from it and `backward()` starts at logit[class].
    pub fn grad_cam(
        &self,
        image: &[f32],
        h: usize,
        w: usize,
        class: usize,
    ) -> Result<GradCam, ClassifyError> {
        let num_classes = self.config.num_classes;
        if class >= num_classes {
            return Err(ClassifyError::ClassOutOfRange { class, num_classes });
        }
        let x = self.input_tensor(image, 1, h, w)?;
        let features = self.trunk(&x)?.detach(); // [1, C, fh, fw]
        let err = ClassifyError::compute("grad_cam");
        let var = Var::from_tensor(&features).map_err(ClassifyError::compute("grad_cam"))?;
        let logits = self.head(var.as_tensor())?; // [1, K]
        let grads = logits
            .narrow(1, class, 1)
            .and_then(|t| t.sum_all())
            .and_then(|t| t.backward())
            .map_err(ClassifyError::compute("grad_cam"))?;
        let grad = grads
            .get(var.as_tensor())
            .ok_or_else(|| ClassifyError::Compute {
                op: "grad_cam",
                source: Box::new(candle_core::Error::Msg("no gradient reached layer4".into())),
            })?;
        let (_, c, fh, fw) = features
            .dims4()
            .map_err(ClassifyError::compute("grad_cam"))?;
        let to_vec = |t: &Tensor| t.flatten_all().and_then(|t| t.to_vec1::<f32>());
        let a = to_vec(&features).map_err(err)?;
        let g = to_vec(grad).map_err(ClassifyError::compute("grad_cam"))?;
        let logits = to_vec(&logits).map_err(ClassifyError::compute("grad_cam"))?;
        Ok(cam_from_gradients(
            logits,
            class,
            &a,
            &g,
            [c, fh, fw],
            [h, w],
        ))
    }
}
