"""nnU-Net v2 trainer for nephrod's CPU demo model: nnU-Net's own trainer with a CPU-sized schedule.

tools/train/train_segmenter.sh copies this file into the venv's
`nnunetv2/training/nnUNetTrainer/` folder, the only place `nnUNetv2_train -tr` looks for trainers.

`nnUNetTrainer_nephrodCPU` changes nothing in the network, loss, augmentation, optimiser or
learning-rate schedule shape (poly from 1e-2); only the lengths:
  * 50 training iterations per epoch (nnU-Net: 250) and 10 validation iterations (50), so an epoch
    is ~1-2 minutes on a 2-core CPU and the pseudo-Dice log is fine-grained;
  * NEPHROD_NNUNET_EPOCHS epochs (default 80, i.e. 4,000 iterations; nnU-Net: 1,000 x 250); the
    poly schedule spans that many epochs. `nnUNetv2_train ... --c` with a smaller value ends a run
    early from its latest checkpoint (recorded in training.json by the script);
  * a checkpoint every 5 epochs (nnU-Net: 50), so an interrupted run loses little;
  * the final validation without mirroring (test-time augmentation costs 8x on a CPU); the
    mirroring axes saved in the checkpoint, which inference uses, are nnU-Net's unchanged.
"""
import os

import torch

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer


class nnUNetTrainer_nephrodCPU(nnUNetTrainer):
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_iterations_per_epoch = 50
        self.num_val_iterations_per_epoch = 10
        self.num_epochs = int(os.environ.get("NEPHROD_NNUNET_EPOCHS", "80"))
        self.save_every = 5

    def perform_actual_validation(self, save_probabilities: bool = False):
        axes = self.inference_allowed_mirroring_axes
        self.inference_allowed_mirroring_axes = None
        try:
            super().perform_actual_validation(save_probabilities)
        finally:
            self.inference_allowed_mirroring_axes = axes
