"""Data: where examples come from (sources), in what order (order), how they are augmented (augment)."""
