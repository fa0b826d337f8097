"""The training engine shared by train.py and real_train.py: the Trainer and what it needs
(precision, EMA, RNG state, resumable sampling, signals, DDP, run folder, resume, validation)."""
