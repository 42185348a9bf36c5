"""`python -m trainer.report SWEEP_DIR [key=value ...]`."""

from trainer.report.sweep import main

main()
