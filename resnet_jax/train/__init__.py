"""Training: optimiser, train/eval steps, checkpoints, metrics and the loop that ties them."""
