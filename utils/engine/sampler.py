"""A DistributedSampler that can start in the middle of an epoch (for exact resume), and the
loader's batches grouped into optimizer steps (gradient accumulation)."""
from __future__ import annotations

from collections.abc import Iterable, Iterator

from torch.utils.data import DistributedSampler


class ResumableSampler(DistributedSampler):
    """Epoch order depends only on (seed, epoch), as in DistributedSampler; `start_batch`
    skips the batches this rank already consumed before an interruption.

    Works without a process group: pass num_replicas=1, rank=0 for single-process runs.
    """

    def __init__(self, dataset, num_replicas: int, rank: int, batch_size: int, seed: int,
                 shuffle: bool = True):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle,
                         seed=seed, drop_last=True)
        self.batch_size = batch_size
        self.start_batch = 0

    def set_position(self, epoch: int, start_batch: int = 0) -> None:
        self.set_epoch(epoch)
        self.start_batch = start_batch

    def batches_per_epoch(self) -> int:
        return self.num_samples // self.batch_size

    def __iter__(self):
        indices = list(super().__iter__())
        usable = self.batches_per_epoch() * self.batch_size  # the loader drops the last partial batch
        return iter(indices[self.start_batch * self.batch_size:usable])

    def __len__(self) -> int:
        return max(0, (self.batches_per_epoch() - self.start_batch) * self.batch_size)


def micro_batches(batches: Iterable, count: int) -> Iterator[list]:
    """The loader's batches in groups of `count` (one optimizer step each); an epoch's last
    incomplete group is left out, as the loader leaves out its last incomplete batch."""
    group = []
    for batch in batches:
        group.append(batch)
        if len(group) == count:
            yield group
            group = []
