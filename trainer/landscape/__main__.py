"""`python -m trainer.landscape [key=value ...]`: a Hydra app, like `python -m trainer`."""

from trainer.runtime.cli import expose_hydra_plugins

expose_hydra_plugins()  # before Hydra scans its plugins: see there

from trainer.landscape.paths import main  # noqa: E402

main()
