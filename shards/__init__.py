"""The sample format on disk, and the one door to it.

Library: :mod:`shards.schema` (what a sample is), :mod:`shards.layout` (names and
folders), :mod:`shards.reader` (the one tar reader), :mod:`shards.writer`,
:mod:`shards.manifest`. The command-line tools live apart, in :mod:`shards.cli`.
Nothing here knows Beam or torch.
"""
