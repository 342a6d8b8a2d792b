"""Inference: a model loaded from a checkpoint file alone, turning text and windows into
embeddings. Imports no training code (no Lightning)."""
