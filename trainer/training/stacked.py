"""The group's model and optimizer: each parameter stacked with a leading member dimension.

`StackedParams` holds, per parameter name, one leaf tensor (M, *shape); every member's own `MLP`
parameters are views of its slice, so the member's `state_dict()`, `evaluate()` and averaging read
the stacked weights without copies. Members of different widths and activations are stacked padded
to the widest member, each a view of its own corner (trainer.training.stacked_layers).
The forward pass is PyTorch's model-ensembling recipe:
`vmap(functional_call(mlp, params, x))` over the member dimension, i.e. batched matmuls with the
ordinary `models.MLP` code; for the MLP's own layers (Linear, activation, dropout) the same batched
matmuls written out, which costs less per call.

`MemberwiseOptimizer` runs torch.optim's own update (foreach or fused) once for all members. When
all members are at one learning rate (a seed sweep; one schedule for all) it updates the stacked
parameters in place at that rate, as a lone job's optimizer does. Otherwise: every supported
optimizer's update is linear in the learning rate, so it runs with lr = 1 on a scratch
tensor `u` set to zero before each step: afterwards `u` holds exactly the update direction
(0 - 1 * d = -d), and each member's parameters move by its own lr times its slice of `u`. Weight decay
is applied member-wise around it (L2 added to the gradient as torch does; AdamW's decoupled
`p *= 1 - lr * wd` before the update). Measured on this project's 2-core CPU, M = 64 digits nets at
batch 64 (one thread): 18 ms per step this way against 27 ms with 64 torch optimizers (one per
member, their parameters views of the stack): the per-optimizer Python overhead costs more than the
extra scratch tensor. Momentum, betas and the like are shared by a group (its grouping key).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, vmap

from models.mlp import ACTIVATIONS
from trainer.training.losses import Loss
from trainer.training.stacked_layers import MemberActivations, own, pad_stack
from trainer.training.stacked_linear import stacked_linear

# torch.optim classes whose update is linear in lr and independent of the parameters' values
# (given the gradient), so that one update with lr = 1 scaled per member is each member's update.
# Rprop (its step sizes start at lr and are clamped) and L-BFGS (a line search) are not.
LINEAR_IN_LR = (torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW, torch.optim.Adamax,
                torch.optim.NAdam, torch.optim.RAdam, torch.optim.RMSprop, torch.optim.Adagrad,
                torch.optim.Adadelta)


VAL_CHUNK = 1 << 22  # elements of one layer's stacked activations in a validation pass (16 MB)


def _broadcast(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(M,) values shaped (M, 1, ...) to broadcast against a stacked parameter `like`."""
    return values.view(-1, *[1] * (like.dim() - 1))


class StackedParams:
    """The members' parameters as stacked leaf tensors, and the vmapped forward pass."""

    def __init__(self, models: Sequence[nn.Module]) -> None:
        self.shape_model = copy.deepcopy(models[0])  # only its structure is used (functional_call)
        self.names = [n for n, _ in models[0].named_parameters()]
        self.params: dict[str, torch.Tensor] = {}
        self.adopt(models)

    def adopt(self, models: Sequence[nn.Module]) -> None:
        """Stack `models`' current weights (padded to the widest member: trainer.training.stacked_layers)
        and make their parameters views of their own part of the stack."""
        current = [dict(m.named_parameters()) for m in models]
        with torch.no_grad():
            self.params = {n: pad_stack([c[n].detach() for c in current]).requires_grad_()
                           for n in self.names}
            for k, c in enumerate(current):
                for n in self.names:
                    c[n].data = self.params[n].detach()[(k, *own(c[n].shape))]
        self.forward_fn = vmap(lambda p, x: functional_call(self.shape_model, p, (x,)),
                               randomness="different")  # dropout: each member draws its own masks
        self.layers = _mlp_layers(models, self.params)
        if self.layers is None and any(c[n].shape != self.params[n].shape[1:] for c in current
                                       for n in self.names):
            raise ValueError("members of different shapes must be plain MLPs (Linear and activation layers)")

    @staticmethod
    def release(model: nn.Module) -> None:
        """Give a member that leaves the group weights of its own (copies of its views)."""
        for p in model.parameters():
            p.data = p.data.clone()

    def __call__(self, x: torch.Tensor, train: bool = True) -> torch.Tensor:
        """(M, B, D) each member's own rows, or (B, D) the same rows for every member -> (M, B, K)."""
        self.shape_model.train(train)  # train=False: dropout off, as a member's evaluate() has it
        if x.dim() == 2 and not self.shares_input:
            x = x.expand(self.members, *x.shape)
        if self.layers is None:
            return self.forward_fn(self.params, x)
        h = x
        for layer in self.layers:  # the MLP's own layers, a Linear as one batched matmul
            if isinstance(layer, tuple):
                h = stacked_linear(h, *(self.params[n] for n in layer))
            else:  # elementwise (activation, dropout): the same module on (M, B, H)
                h = layer(h)
        return h

    @property
    def members(self) -> int:
        return len(next(iter(self.params.values())))

    @property
    def shares_input(self) -> bool:
        """Whether one (B, D) batch can stand for all members' rows: the first layer is a Linear
        (an input dropout would draw one mask for all)."""
        return self.layers is not None and isinstance(self.layers[0], tuple)

    @property
    def tensors(self) -> list[torch.Tensor]:
        return list(self.params.values())


def _mlp_layers(models: Sequence[nn.Module], params: dict[str, torch.Tensor]) -> list[Any] | None:
    """The MLPs' `net` as (weight name, bias name) per Linear and the elementwise layers between
    (each activation a `MemberActivations`: the members' own, on the padded stack), or None for
    another structure (then the vmapped forward runs). Measured at M = 4 digits nets on this CPU:
    1.0 ms per forward and backward this way, 1.5 ms through vmap (7% at M = 64)."""
    nets = [getattr(m, "net", None) for m in models]
    if not all(isinstance(n, nn.Sequential) and len(n) == len(nets[0]) for n in nets):
        return None
    layers: list[Any] = []
    widths: list[int] = []  # each member's width of the layer before
    for i, (name, module) in enumerate(nets[0].named_children()):
        column = [n[i] for n in nets]
        if all(isinstance(m, nn.Linear) and m.bias is not None for m in column):
            layers.append((f"net.{name}.weight", f"net.{name}.bias"))
            widths = [m.weight.shape[0] for m in column]
        elif widths and all(isinstance(m, tuple(ACTIVATIONS.values())) for m in column):
            layers.append(MemberActivations(column, widths, next(iter(params.values())).device))
        elif all(isinstance(m, nn.Dropout) for m in column):  # its rate is the group's (grouping key)
            layers.append(module)
        else:
            return None
    return layers


@torch.inference_mode()
def stacked_validation(stacked: StackedParams, x: torch.Tensor, y: torch.Tensor,
                       loss: Loss) -> list[dict[str, float]]:
    """Each member's `val/loss` (and `val/acc`) in one batched pass: what `trainer.training.loop.evaluate`
    computes for one model, for all members (rows in chunks that keep M x rows x width small)."""
    members = stacked.members
    widest = max(t.shape[1] for t in stacked.tensors if t.dim() == 3)
    rows = max(1, VAL_CHUNK // (members * widest))
    loss_sum = torch.zeros(members, device=x.device)
    correct = torch.zeros(members, device=x.device, dtype=torch.int64)
    for i in range(0, len(x), rows):
        xb, yb = x[i:i + rows], y[i:i + rows]
        out = stacked(xb, train=False)  # the same rows for every member: one shared product
        ys = yb.expand(members, *yb.shape)
        loss_sum += loss.member_means(out, ys).float() * len(xb)
        if loss.task == "classification":
            correct += (out.argmax(-1) == ys).sum(1)
    n = max(len(x), 1)
    columns = {"val/loss": (loss_sum / n).tolist()}  # one host sync for the group
    if loss.task == "classification":
        columns["val/acc"] = (correct / n).tolist()
    return [{tag: column[k] for tag, column in columns.items()} for k in range(members)]


class MemberwiseOptimizer:
    """One torch.optim update for all members, scaled by each member's learning rate."""

    def __init__(self, build: Any, stacked: StackedParams) -> None:
        self.build, self.stacked = build, stacked
        self._build()
        if not isinstance(self.optimizer, LINEAR_IN_LR):
            raise TypeError(f"{type(self.optimizer).__name__} cannot be vectorized")
        defaults = self.optimizer.defaults
        self.decoupled = isinstance(self.optimizer, torch.optim.AdamW) or bool(
            defaults.get("decoupled_weight_decay", False))

    @torch.no_grad()
    def clip_(self, clips: Sequence[float | None]) -> None:
        """Clip each member's gradient to its own total L2 norm (clip_grad_norm_'s rule)."""
        if not any(clips):
            return
        grads = [p.grad for p in self.stacked.tensors]
        norms = torch.stack([g.flatten(1).pow(2).sum(1) for g in grads]).sum(0).sqrt()  # (M,)
        limit = torch.tensor([c if c else float("inf") for c in clips], dtype=norms.dtype,
                             device=norms.device)
        coef = (limit / (norms + 1e-6)).clamp(max=1.0)
        for g in grads:
            g.mul_(_broadcast(coef, g))

    @torch.no_grad()
    def step(self, lrs: Sequence[float], weight_decays: Sequence[float]) -> None:
        """Update every member: p_k += lr_k * u_k with u the update torch.optim computes at lr 1."""
        params = self.stacked.tensors
        like = params[0]
        same = all(v == lrs[0] for v in lrs)  # e.g. a seed sweep, or one schedule for all
        lr = None if same and not (self.decoupled and any(weight_decays)) else torch.tensor(
            lrs, dtype=like.dtype, device=like.device)  # (M,): only where the rates are used per member
        if any(weight_decays):
            wd = torch.tensor(weight_decays, dtype=like.dtype, device=like.device)
            if self.decoupled:  # AdamW's p *= 1 - lr * wd, before the update as torch's
                keep = 1 - lr * wd
                for p in params:
                    p.mul_(_broadcast(keep, p))
            else:  # L2 on the gradient, as torch adds it (grad + wd * p)
                for p in params:
                    p.grad.add_(_broadcast(wd, p) * p)
        targets = [p.detach() for p in params] if same else self._zeroed_scratch()
        for h, t, p in zip(self.handles, targets, params, strict=True):
            h.data, h.grad = t, p.grad
        for group in self.optimizer.param_groups:
            group["lr"] = lrs[0] if same else 1.0
        self.optimizer.step()
        if not same:
            for u, p in zip(self.scratch, params, strict=True):
                p.addcmul_(_broadcast(lr, p), u)

    def _build(self) -> None:
        """The optimizer over `handles`: tensors whose `.data` is, for each step, either the stacked
        parameters themselves (all members at one learning rate: torch's update in place, as a
        lone job's, without the scratch's two extra passes over the stack: 1.12-1.23x faster per
        member and update, `scripts/bench_step.py --stacked`) or the scratch update (rates differ).
        Its state is keyed by the handles, so it is the same in both."""
        self.handles = [p.detach() for p in self.stacked.tensors]
        self.scratch: list[torch.Tensor] = []
        self.optimizer: torch.optim.Optimizer = self.build(self.handles)

    def _zeroed_scratch(self) -> list[torch.Tensor]:
        if not self.scratch:
            self.scratch = [torch.zeros_like(p) for p in self.stacked.tensors]
        else:
            torch._foreach_zero_(self.scratch)
        return self.scratch

    def zero_grad(self) -> None:
        for p in self.stacked.tensors:
            p.grad = None

    # ----------------------------------------------------------------- member slices of the state
    def _stacked_state(self) -> list[dict[str, Any]]:
        return [self.optimizer.state.get(h, {}) for h in self.handles]

    def member_state(self, k: int, member_optimizer: torch.optim.Optimizer) -> None:
        """Write member k's slice of the state into its own optimizer (for its checkpoint)."""
        params = [p for g in member_optimizer.param_groups for p in g["params"]]
        for p, u, st in zip(params, self.handles, self._stacked_state(), strict=True):
            if st:  # its own shape: the padding (trainer.training.stacked_layers) is not its state
                member_optimizer.state[p] = {key: _slice(v, u, k, p.shape) for key, v in st.items()}

    def load_members(self, member_optimizers: Sequence[torch.optim.Optimizer]) -> None:
        """Stack the members' own optimizer states (restored from checkpoints) into this one's."""
        per_member = [[o.state.get(p, {}) for g in o.param_groups for p in g["params"]]
                      for o in member_optimizers]
        for i, u in enumerate(self.handles):
            states = [m[i] for m in per_member]
            if not states[0]:
                continue
            self.optimizer.state[u] = {
                key: pad_stack([s[key] for s in states], u.shape[1:]).to(u.device)
                if _stacked(v, u[0]) else v.clone() if isinstance(v, torch.Tensor) else v
                for key, v in states[0].items()}

    def keep(self, keep: Sequence[int]) -> None:
        """Drop the members not in `keep` (after `StackedParams.adopt` of the kept ones)."""
        index = torch.tensor(list(keep), device=self.handles[0].device)
        old = self._stacked_state()
        self._build()
        for u, st in zip(self.handles, old, strict=True):
            if st:  # the kept rows, cut to the kept members' padded shape (`adopt` narrows the stack)
                self.optimizer.state[u] = {
                    key: v.index_select(0, index)[(slice(None), *own(u.shape[1:]))].contiguous()
                    if _stacked(v, u) else v for key, v in st.items()}


def _stacked(v: Any, u: torch.Tensor) -> bool:
    """Whether a state value holds one entry per parameter element (and so per member)."""
    return isinstance(v, torch.Tensor) and v.dim() == u.dim() and v.dim() > 0


def _slice(v: Any, u: torch.Tensor, k: int, shape: Sequence[int]) -> Any:
    """Member k's part of one state value: a per-element tensor is sliced (its own `shape`, a copy:
    not a view that would save the whole stack), a step count copied."""
    if _stacked(v, u):
        return v[(k, *own(shape))].clone()
    return v.clone() if isinstance(v, torch.Tensor) else v
