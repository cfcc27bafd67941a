"""The training engine: `run.train(cfg)` and what it is made of (the LightningModule, its step loop,
callbacks, checkpoints, resuming, stops, run folders). It uses the models and the data, never the
applications above it."""
