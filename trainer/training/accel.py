"""Speed options resolved once: precision (autocast, grad scaler), torch.compile, TF32, fused
optimizers and CUDA graphs. `make_step` returns the training step the loop calls: a `TrainStep`,
or that step captured in a CUDA graph."""

from __future__ import annotations

import contextlib
import inspect
import logging
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import torch
from hydra.utils import get_object
from torch import nn

from trainer.training.backprop import ManualBackprop, manual_reason, sgd_update

log = logging.getLogger(__name__)

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
# Optimizers whose update can be captured in a CUDA graph with `capturable=True` and a tensor lr
# (so schedulers change the rate in place, inside the graph's memory).
GRAPH_OPTIMIZERS = (torch.optim.Adam, torch.optim.AdamW)
# Optimizers with a fused CPU kernel (torch >= 2.4): a vectorized group's Adam at M = 64 digits nets
# 4.9 ms an update instead of 6.8 ms on this project's 2-core CPU. SGD without momentum is not
# fused on the CPU: its default update is one add_ per parameter, which beats the fused kernel's
# grouping of the tensors (784-256-10 at batch size 1: 163 against 172 µs a step; with momentum 0.9
# the fused update wins, 190 against 215).
CPU_FUSED = (torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW, torch.optim.Adagrad)

Step = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def setup_backend(device: torch.device, tf32: bool) -> None:
    """TF32 tensor-core matmuls on CUDA (about 10 mantissa bits instead of 23, several times faster)."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The forward pass's autocast context: a no-op for fp32."""
    dtype = PRECISIONS[precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def optimizer_options(target: str, given: Mapping[str, Any], device: torch.device,
                      cuda_graphs: bool) -> dict[str, Any]:
    """Extra arguments for the optimizer `target` (a dotted path) configured with `given`.

    `fused=True` where the config chose no implementation and torch has a fused kernel: on CUDA
    wherever the class accepts it, on the CPU for CPU_FUSED except SGD without momentum (one kernel
    per update instead of a few ops per parameter: torch.optim's default CPU path is a Python loop
    over the parameters). For CUDA graphs also `capturable=True` and a tensor learning rate, which
    schedulers then update in place inside the graph's memory.
    """
    try:
        func = get_object(target)
        accepted = inspect.signature(func).parameters
    except Exception:  # a bad target is reported when the optimizer is built
        return {}
    extra: dict[str, Any] = {}
    graphed = cuda_graphs and isinstance(func, type) and issubclass(func, GRAPH_OPTIMIZERS)
    if device.type == "cuda" and graphed:
        lr = float(given.get("lr", accepted["lr"].default))
        extra = {"capturable": True, "lr": torch.tensor(lr, device=device)}
    plain_sgd = func is torch.optim.SGD and not given.get("momentum", 0)
    fusable = device.type == "cuda" or (isinstance(func, type) and func in CPU_FUSED and not plain_sgd)
    if fusable and "fused" in accepted and "fused" not in given and "foreach" not in given:
        extra["fused"] = True
    return extra


def compile_model(model: nn.Module, enabled: bool) -> nn.Module:
    """`torch.compile(model)` when enabled; the parameters stay shared with `model`."""
    return torch.compile(model) if enabled else model


class TrainStep:
    """The one training step, whatever the options: zero_grad, forward and loss under autocast,
    backward through a grad scaler (enabled for fp16 only), clipping of the true gradients to total
    norm `grad_clip` (no host sync), and the optimizer's update; L-BFGS gets the same body as the
    closure it re-evaluates during its line search. `penalty()` (regularization) is added to the loss
    that is differentiated, in fp32 outside autocast; `step(xb, yb)` returns the data loss and the
    outputs, detached. With `manual=True` (`backprop=auto`, where `make_step` finds it possible) a
    plain MLP's forward and backward are trainer.training.backprop's, with autograd's numbers.
    `GraphedStep` captures this same body in a CUDA graph.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: LossFn,
                 device: torch.device, precision: str = "fp32", grad_clip: float | None = None,
                 penalty: Callable[[], torch.Tensor] | None = None, manual: bool = False) -> None:
        self.closure = isinstance(optimizer, torch.optim.LBFGS)  # fp16 refused by trainer.config
        self.model, self.optimizer, self.loss_fn, self.penalty = model, optimizer, loss_fn, penalty
        self.autocast = partial(autocast, device, precision)
        self.scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
        self.scaled = self.scaler.is_enabled()  # else its calls are no-ops: skipped, at ~1 µs each
        params = list(model.parameters())
        self.clip = partial(nn.utils.clip_grad_norm_, params, grad_clip) if grad_clip else None
        # What optimizer.zero_grad(set_to_none=True) clears, cleared directly: its wrappers (a
        # dynamo guard, a profiler range) cost about a tenth of a 784-256-10 step at batch size 1.
        self.params = [p for group in optimizer.param_groups for p in group["params"]]
        # backprop=auto (trainer.training.backprop): a plain MLP's gradient by hand, and plain SGD's update
        # without optimizer.step()'s overhead; the same numbers as autograd and torch.optim.SGD.
        self.manual = ManualBackprop(model, loss_fn) if manual else None
        self.sgd = sgd_update(optimizer) if manual and not self.scaled else None

    def gradient(self, xb: torch.Tensor, yb: torch.Tensor,
                 set_to_none: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch's loss and outputs, with its (unscaled, clipped) gradient in the parameters."""
        if self.manual is not None:  # sets every .grad (no penalty, no scaler: manual_reason)
            loss, out = self.manual(xb, yb)
            self.objective = loss
        else:
            loss, out = self.backward(xb, yb, set_to_none)
        if self.clip is not None:
            self.scaler.unscale_(self.optimizer)  # clip the true gradients, not the scaled ones
            self.clip()
        return loss, out

    def backward(self, xb: torch.Tensor, yb: torch.Tensor,
                 set_to_none: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward under autocast, then autograd's backward of the (scaled) penalized loss."""
        if set_to_none:
            for p in self.params:
                p.grad = None
        else:  # a CUDA graph keeps its gradient buffers: zero them in place
            self.optimizer.zero_grad(set_to_none=False)
        with self.autocast():
            out = self.model(xb)
            loss = self.loss_fn(out, yb)
        self.objective = loss if self.penalty is None else loss + self.penalty()  # what is minimized
        (self.scaler.scale(self.objective) if self.scaled else self.objective).backward()
        return loss, out

    def update(self) -> None:
        """The optimizer's step (skipped by the scaler when fp16 gradients overflowed)."""
        if self.sgd is not None:
            self.sgd()
            return
        if not self.scaled:
            self.optimizer.step()
            return
        self.scaler.step(self.optimizer)
        self.scaler.update()

    def __call__(self, xb: torch.Tensor, yb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.closure:
            first: list[torch.Tensor] = []  # the loss and outputs before the update

            def closure() -> torch.Tensor:
                loss, out = self.gradient(xb, yb)
                if not first:
                    first.extend((loss.detach(), out.detach()))
                return self.objective  # the line search minimizes the penalized loss

            self.optimizer.step(closure)
            return first[0], first[1]
        loss, out = self.gradient(xb, yb)
        self.update()
        return loss.detach(), out.detach()


def graph_fallback_reason(device: torch.device, optimizer: torch.optim.Optimizer, precision: str,
                          compiled: bool, distributed: bool, grad_clip: float | None = None) -> str | None:
    """Why the training step cannot be captured in a CUDA graph here, or None when it can."""
    if device.type != "cuda":
        return f"CUDA graphs need a CUDA device and this run is on {device}"
    if not isinstance(optimizer, GRAPH_OPTIMIZERS):
        names = ", ".join(c.__name__ for c in GRAPH_OPTIMIZERS)
        return f"{type(optimizer).__name__} cannot run captured (supported: {names})"
    if not all(g.get("capturable") and isinstance(g["lr"], torch.Tensor) for g in optimizer.param_groups):
        return "the optimizer was not built with capturable=True and a tensor lr"
    if precision == "fp16":
        return "precision=fp16 needs the grad scaler's per-step inf check on the host; use bf16"
    if compiled:
        return "compile=true already compiles the step; use one of compile and cuda_graphs"
    if distributed:
        return "DDP's gradient all-reduce is not captured here"
    if grad_clip:
        return "grad_clip is not captured here; leave grad_clip unset to capture the step"
    return None


class GraphedStep:
    """`TrainStep`'s body (forward, loss, backward, optimizer update) as one CUDA graph.

    Captured for one batch size on the first call; inputs are copied into static buffers. Batches
    of another size (an epoch's last partial batch) run eagerly, accumulating into the graph's own
    gradient tensors (so never set to None).
    """

    def __init__(self, step: TrainStep, batch_size: int) -> None:
        self.step, self.optimizer, self.batch_size = step, step.optimizer, batch_size
        self.graph: torch.cuda.CUDAGraph | None = None

    def _body(self) -> None:
        self.loss, self.out = self.step.gradient(self.x, self.y)
        self.step.update()

    def _capture(self, xb: torch.Tensor, yb: torch.Tensor) -> None:
        self.x, self.y = xb.clone(), yb.clone()
        # Warm-up steps (lazy optimizer state, cuBLAS handles) on a side stream, as capture needs;
        # their updates are undone so that the run trains exactly as the eager loop would.
        # BatchNorm's running statistics (buffers) are undone too.
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        params += list(self.step.model.buffers())
        saved = [p.detach().clone() for p in params]
        saved_state = {p: {k: v.clone() for k, v in st.items() if isinstance(v, torch.Tensor)}
                       for p, st in self.optimizer.state.items()}  # non-empty after a resume
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                self._body()
        torch.cuda.current_stream().wait_stream(side)
        self.optimizer.zero_grad(set_to_none=True)  # the graph allocates the gradients it writes
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self._body()
        with torch.no_grad():
            for p, s in zip(params, saved, strict=True):
                p.copy_(s)
            for p, state in self.optimizer.state.items():  # state made by the warm-up starts at 0
                for k, v in state.items():
                    if isinstance(v, torch.Tensor) and k in saved_state.get(p, {}):
                        v.copy_(saved_state[p][k])
                    elif isinstance(v, torch.Tensor):
                        v.zero_()

    def __call__(self, xb: torch.Tensor, yb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if len(xb) != self.batch_size:
            loss, out = self.step.gradient(xb, yb, set_to_none=False)
            self.step.update()
            return loss.detach(), out.detach()
        if self.graph is None:
            self._capture(xb, yb)
        self.x.copy_(xb)
        self.y.copy_(yb)
        self.graph.replay()
        # Clones: the next replay overwrites the static outputs, the loop keeps these.
        return self.loss.detach().clone(), self.out.detach().clone()


def make_step(model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: LossFn, device: torch.device,
              *, precision: str = "fp32", cuda_graphs: bool = False, compiled: bool = False,
              distributed: bool = False, batch_size: int = 0, grad_clip: float | None = None,
              penalty: Callable[[], torch.Tensor] | None = None, backprop: str = "auto") -> Step:
    """The training step for these options: captured in a CUDA graph when asked and possible; with
    `backprop=auto` a plain MLP's gradient is computed by hand (trainer.training.backprop) where it can be."""
    manual = False
    if backprop == "auto":
        reason = manual_reason(model, precision, compiled, cuda_graphs, penalty, device)
        manual = reason is None
        log.debug("backprop: %s", "by hand (training.backprop)" if manual else f"autograd, as {reason}")
    step = TrainStep(model, optimizer, loss_fn, device, precision, grad_clip, penalty, manual)
    if cuda_graphs:
        reason = graph_fallback_reason(device, optimizer, precision, compiled, distributed, grad_clip)
        if reason is None:
            log.info("cuda_graphs: the training step is captured for batch size %d", batch_size)
            return GraphedStep(step, batch_size)
        log.warning("cuda_graphs=true ignored: %s; training with the eager step", reason)
    return step
