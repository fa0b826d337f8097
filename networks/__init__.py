"""The HCN deraining network (AAAI-22): build it from a `config.ModelConfig`.

`build_model(cfg.model)` -> HCN; `HCN(rainy, branches=False)` -> HCNOutput(bottom, middle,
top, half, quarter); `parameter_summary(model)` -> a printable table.
"""
from .hcn import HCN, HCNOutput, build_model
from .summary import parameter_summary

__all__ = ["HCN", "HCNOutput", "build_model", "parameter_summary"]
