"""Report: runs and records become figures and tables. `runs` reads a study's work directories back,
`tables`, `plots` and `responses` draw them, each analysis's `<name>_plots` its records (the analyses'
registry names them), `index` writes <root>/report/index.md, `analyze` runs and draws `resnet-jax analyze`."""
