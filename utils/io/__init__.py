"""Files in and out: images, checkpoints, result tables, image panels, atomic writes."""
