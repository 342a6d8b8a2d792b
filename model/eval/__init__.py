"""Evaluation: zero-shot retrieval between windows (`evaluation`) and its metrics
(`retrieval`). Reads the objectives only through their public `embed` method."""
