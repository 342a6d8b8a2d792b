"""model: tensors and Lightning, in layers that import one way only.

    config  <  data  <  nn  <  objectives  <  eval  <  inference  <  cli  <  train

- `model.config`: ModelConfig, ObjectiveConfig, shared constants;
- `model/data/`: the batch contract, tokenizer, shard samples -> batches, the data module;
- `model/nn/`: layers, encoders, the joint transformer, the backbone, masks and targets;
- `model/objectives/`: the pretraining objectives, their losses (`losses/`) and `Reserve`,
  the backbone with the objectives chosen in config;
- `model/eval/`: zero-shot retrieval, through each objective's `embed`;
- `model/inference/`: a model loaded from a checkpoint file alone, for embedding;
- `model/cli/`: `python -m model` (tokenizer, embed, search, evaluate), no training code;
- `model/train/`: the LightningModule and callbacks.

A module imports only from its own layer and the layers before it. `config`, `seeding`
and `distributed` import nothing else of `model/`, so every layer may use them.
tests/model/test_layering.py holds this true.
"""
