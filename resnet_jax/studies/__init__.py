"""Studies: a grid of configs becomes runs. `study` reads a study file (experiments/*.py) into
members, `sweep` runs the unfinished ones through a `launchers` backend or `slurm` job arrays."""
