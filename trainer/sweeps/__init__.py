"""Hydra and Optuna glue: job folder names and process records, the value a job hands back to
the sweeper, the trial link, Hydra callbacks.
"""
