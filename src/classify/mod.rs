//! Renal-mass subtype classification (seed 001, shared/docs/method.md A.3): a candle ResNet on
//! three contrast phases' largest-lesion slices, Grad-CAM explanations, and the exact input
//! preparation shared by inference and `nephrod export-crops`.
