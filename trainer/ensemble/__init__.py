"""Ensembles (the notes' bagging and boosting): the combined model, each member's samples,
SAMME's weights, and how the members train.
"""
