"""Studies: sweeps over a base config (experiments/*.py) and the reports made from their runs.

`study` reads a study file into members, `sweep` runs them through a `launchers` backend,
`runs` reads the work directories back, and `report` turns them into `tables`, `plots`
(error curves, gradient norms) and `responses` (the paper's Fig. 7).
"""
