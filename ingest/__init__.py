"""ingest: videos and Beam, from an input list to shards (README, Ingest)."""

METRICS = "montage"  # the namespace of the pipeline's Beam counters
