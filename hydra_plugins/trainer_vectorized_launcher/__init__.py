"""`hydra/launcher=vectorized`: a sweep's jobs trained together as stacked models (trainer.vectorized)."""
