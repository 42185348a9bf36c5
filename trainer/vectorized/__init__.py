"""Many jobs of a sweep trained together as one stacked model (`hydra/launcher=vectorized`):
`grouping` which jobs share one, `member` one job as `run()` builds it, `group` a group's epochs."""
