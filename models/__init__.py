"""Model builders. Plain arguments in, `nn.Module` out: no config objects here."""

from models.mlp import ACTIVATIONS, INITS, MLP, count_parameters, resolve_widths

__all__ = ["ACTIVATIONS", "INITS", "MLP", "count_parameters", "resolve_widths"]
