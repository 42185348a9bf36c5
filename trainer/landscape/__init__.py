"""`python -m trainer.landscape`: the real torch.optim optimizers' paths on 2-D test
functions, and their figure.
"""
