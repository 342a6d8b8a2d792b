"""The network: layers, the modality encoders, the joint transformer and the backbone that
holds them, plus the masks and targets objectives draw on. No objective and no loss."""
