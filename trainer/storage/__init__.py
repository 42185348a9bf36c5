"""What a run keeps on disk and the rules for continuing: atomic checkpoints, the run folder,
resumption, the vectorized launcher's group file.
"""
