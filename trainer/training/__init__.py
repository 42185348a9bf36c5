"""How a model trains: losses, the by-hand backward pass, the step and epoch loops, schedules,
averaging, stopping, regularization, the stacked members of one model.
"""
