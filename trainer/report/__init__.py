"""`python -m trainer.report SWEEP_DIR`: a sweep's jobs read back as tables, CSV files and
figures, mean ± std over seeds, choosing on validation.
"""
