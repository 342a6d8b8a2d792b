"""Evaluation: zero-shot retrieval between windows (`evaluation`), still frames against
their segment's words (`deflation`), and the metrics (`retrieval`). Reads the objectives
only through their public `embed` method."""
