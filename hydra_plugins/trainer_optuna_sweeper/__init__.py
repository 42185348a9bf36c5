"""`hydra/sweeper=optuna`: the trainer's Optuna sweeper (Optuna 4 or later, a study in a database)."""
