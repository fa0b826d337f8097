"""Synthetic rain, offline: rain styles, rendering, clean photos, fixed sets and a CLI.

`styles` (what rain looks like, `mixed` domain randomisation, the held-out `gusty`),
`rain` (rendering: `add_rain`), `photos` (clean backgrounds shipped in wheels or a folder
of yours, with augmentation), `sets` (fixed val/test sets, writing a data set to disk),
`stream` (training pairs made on the fly),
`python -m utils.synthetic --preset mixed --out DIR` (the CLI).
"""
