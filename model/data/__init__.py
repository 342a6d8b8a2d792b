"""The data layer: shard samples -> the model's Batch.

`batch` (the contract the model consumes), `tokenizer`, `vocab` (transcripts read from
shards, and how much a tokenizer cuts them), `collate` (one decoded sample ->
arrays), `loader` (the webdataset streams), `stream` (what the streams yield) and
`datamodule` (ShardDataModule for Lightning). Imports only `model.config` and the
neutral helpers of `model/` (see model/__init__.py); never the network above it.
"""
