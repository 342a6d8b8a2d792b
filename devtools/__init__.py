"""Media and servers for tests, benchmarks and the demo; run from a checkout, never installed.

- ``mediagen``: generated test videos (a barcode of the frame index in every picture),
  word lists, and caption files in YouTube's auto-caption, manual WebVTT and SRT layouts.
- ``samples``: small synthetic shard samples, without media tools.
- ``demo_assets`` and ``demo_corpus``: the narrated demo corpus (``python -m devtools.demo_corpus``).
- ``localserve``: an HTTP file server on 127.0.0.1 with range requests and injected failures.

Production code (``ingest``, ``shards``, ``model``) never imports this package, and the
worker image does not carry it (see the Dockerfile and .dockerignore).
"""
