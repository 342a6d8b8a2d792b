"""Training with Lightning: the LightningModule (`module`) and the callbacks."""
