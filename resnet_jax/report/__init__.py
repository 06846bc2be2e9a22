"""Report: runs and records become figures and tables. `runs` reads a study's work directories back,
`tables`, `plots`, `responses` and `analysis_plots` draw them, `index` writes <root>/report/index.md,
`analyze` draws the per-model figures of `resnet-jax analyze`."""
