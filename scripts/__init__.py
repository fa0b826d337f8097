"""Entry points a user does not run day to day: the benchmark, the shipped-weights export, the
documentation's pictures and analyses, the kill -9 trials. Each runs from any folder as
`python scripts/NAME.py`."""
