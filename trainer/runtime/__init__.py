"""Process-level concerns under everything else: user errors and exit codes, the console,
signals, devices and threads, torchrun, what a run records about where it ran.
"""
