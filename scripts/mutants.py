"""Hand-written mutants of important behaviour: does the test suite notice each one?

    python scripts/mutants.py            # every mutant (`make mutants`)
    python scripts/mutants.py 3 7        # mutants 3 and 7 only

Each mutant replaces one exact piece of a source file (it must occur exactly once) with a wrong
one, runs the tests named beside it, and puts the file back, whatever happens. A mutant is killed
when those tests fail. The table lists every mutant with its killing tests; the exit status is 1
when one survived (or its piece of code is no longer found: update the table with the code).
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Mutant:
    what: str  # the fault, as a reader would describe it
    path: str  # the file, from the repository root
    old: str  # the exact code the mutant replaces
    new: str
    tests: tuple[str, ...]  # pytest arguments: files, `file::test`, `-k expression`


MUTANTS = (
    Mutant("compile=true ignored", "trainer/training/accel.py",
           "return torch.compile(model) if enabled else model", "return model",
           ("tests/unit/training/test_accel.py", "-k", "compile_true")),
    Mutant("best.pt written with the last epoch's weights", "trainer/storage/checkpoint.py",
           'best = {**ckpt, "model": state.best_weights}', 'best = {**ckpt, "model": ckpt["model"]}',
           ("tests/unit/storage/test_resume.py",)),
    Mutant("a vectorized member's lr taken from another member", "trainer/vectorized/group.py",
           "self.optimizer.step([m.lr for m in self.active]",
           "self.optimizer.step([self.active[0].lr for m in self.active]",
           ("tests/unit/vectorized/test_group.py",)),
    Mutant("the 1/k schedule one step late", "trainer/training/schedules.py",
           "ratio = 1.0 if k == 0 else self.factor(k) / self.factor(k - 1)",
           "ratio = 1.0 if k <= 1 else self.factor(k - 1) / self.factor(k - 2)",
           ("tests/unit/training/test_schedules.py",)),
    Mutant("standardization fitted on the test split", "trainer/data/prepare.py",
           "fit_preprocessor(data.preprocess, splits.x_train,",
           "fit_preprocessor(data.preprocess, splits.x_test,",
           ("tests/integration/test_data.py", "-k", "train_splits_statistics")),
    Mutant("a resume that skips the data fingerprint", "trainer/storage/resume.py",
           "if saved is not None and saved != fingerprint:", "if False:",
           ("tests/unit/storage/test_resume.py", "tests/integration/test_reliability.py")),
    Mutant("SAMME's weight update with the wrong sign", "trainer/ensemble/model.py",
           "new = weights * torch.exp(alpha * miss)", "new = weights * torch.exp(-alpha * miss)",
           ("tests/unit/ensemble/test_model.py",)),
    Mutant("early stopping one epoch late", "trainer/training/stopping.py",
           "self.bad_epochs >= self.patience", "self.bad_epochs > self.patience",
           ("tests/unit/training/test_stopping.py",)),
    Mutant("divergence never detected", "trainer/training/epoch.py",
           "if train_loss > factor * initial and train_loss > before:", "if False:",
           ("tests/integration/test_reliability.py", "tests/unit/storage/test_resume.py")),
    Mutant("SWA tests the plain weights when they validated better", "trainer/training/epoch.py",
           "first_average = averaged and state.best_epoch < averaging.start_epoch", "first_average = False",
           ("tests/unit/training/test_averaging.py",)),
    Mutant("predictions.csv names the wrong rows", "trainer/eval.py",
           "rows.append([name, part, int(i), *values])", "rows.append([name, part, int(i) + 1, *values])",
           ("tests/integration/test_eval.py",)),
    Mutant("a killed trial's retry does not stand for it in the report", "trainer/report/stats.py",
           "            out[job.name] = later.name", "            pass",
           ("tests/unit/report/test_stats.py",)),
    # (the rest of the module still imports: a bare `pass` broke `import trainer`, conftest included)
    Mutant("the passive OpenMP wait policy not set", "trainer/runtime/startup.py",
           'os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")\nif not TORCH_FIRST:\n'
           '    WAIT_POLICY_AT_LOAD = os.environ["OMP_WAIT_POLICY"]',
           'if not TORCH_FIRST:\n    WAIT_POLICY_AT_LOAD = os.environ.get("OMP_WAIT_POLICY")',
           ("tests/unit/runtime/test_device.py", "-k", "import_trainer_sets")),
    Mutant("a new run trains over a folder that holds a run", "trainer/storage/rundir.py",
           "        if found and not self.overwrite:", "        if False:",
           ("tests/unit/storage/test_rundir.py", "-k", "second_run or sweep")),
    Mutant("a run whose training loss rose is not flagged", "trainer/training/outcome.py",
           "and last is not None and last > first:", "and last is not None and last > 10 * first:",
           ("tests/unit/training/test_outcome.py",)),
    Mutant("the run folder's lock does not record its holder (a refusal cannot name it)",
           "trainer/storage/rundir.py",
           'os.write(self._fd, f"{os.getpid()}\\n".encode())', "pass",
           ("tests/unit/storage/test_rundir.py", "tests/unit/storage/test_resume.py")),
    Mutant("a vectorized job with an L1/L2 penalty trains in a stacked group (which takes no penalty)",
           "trainer/vectorized/grouping.py", "        if reg.get(key):", "        if False:",
           ("tests/cli/test_vectorized.py", "-k", "regularized")),
)


def run_mutant(mutant: Mutant) -> tuple[str, float]:
    """Apply, test, restore: ('killed' | 'SURVIVED' | 'code not found', seconds)."""
    path = ROOT / mutant.path
    source = path.read_text()
    if source.count(mutant.old) != 1:
        return f"code not found ({source.count(mutant.old)} matches)", 0.0
    started = time.monotonic()
    try:
        path.write_text(source.replace(mutant.old, mutant.new))
        pytest = [sys.executable, "-m", "pytest", "-x", "-q", "-n", "0", "-p", "no:cacheprovider"]
        proc = subprocess.run([*pytest, *mutant.tests], cwd=ROOT, capture_output=True, text=True)
    finally:
        path.write_text(source)
    return ("killed" if proc.returncode not in (0, 5) else "SURVIVED"), time.monotonic() - started


def main(argv: list[str]) -> int:
    chosen = [int(a) for a in argv] or list(range(1, len(MUTANTS) + 1))
    print("| # | mutant | file | killed by | result | s |\n|---|---|---|---|---|---|")
    bad = 0
    for number in chosen:
        mutant = MUTANTS[number - 1]
        result, seconds = run_mutant(mutant)
        bad += result != "killed"
        print(f"| {number} | {mutant.what} | `{mutant.path}` | `{' '.join(mutant.tests)}` | {result} | "
              f"{seconds:.0f} |", flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
