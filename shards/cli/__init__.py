"""The ``montage-shards`` tools (``python -m shards``): inspect, verify, show, sample.

They read shards through the library (:mod:`shards.reader`, :mod:`shards.layout`,
:mod:`shards.manifest`), which knows nothing of them. ``show`` draws with matplotlib,
an optional dependency (``pip install 'montage[tools]'``).
"""
