"""Many jobs of a sweep trained together as one stacked model (`hydra/launcher=vectorized`).

`grouping` decides which jobs can share a model, `member` builds one job as `run()` would,
`stacked` holds the stacked parameters and the member-wise optimizer, `group` trains a group.
"""

from trainer.vectorized.group import train_group
from trainer.vectorized.member import Finished, Member

__all__ = ["Finished", "Member", "train_group"]
