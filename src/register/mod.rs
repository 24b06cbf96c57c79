//! Multi-phase affine registration (seed 001, shared/docs/method.md A.2).
