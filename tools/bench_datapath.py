"""CPU proxy of issue 12 §3: loop overhead per optimiser step with a trivial model (the data path alone).

Run: ``.venv/bin/python tools/bench_datapath.py`` (prints ms/step for the DataLoader and the device path).
"""

import time

import torch
from torch import nn
from torch.utils.data import DataLoader

from mernb.data.records import Sample
from mernb.experiments.mpt import MPTDataset, batch_inputs
from mernb.train.device_data import DeviceBatches
from mernb.train.loop import OptimConfig, train_model

torch.set_num_threads(1)
N, S, T = 256, 112, 8
CLASSES = ["happiness", "disgust", "repression", "surprise", "others"]
samples = [Sample("casme2", f"{i // 8}", f"c{i}", 0, None, 10, "happiness") for i in range(N)]
inputs = {s.sample_id: {"image": torch.randn(3, S, S), "motion": torch.randn(T, 3, S, S)} for s in samples}


class Trivial(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Linear(3, 5)

    def forward(self, x):
        return self.w(x["image"][:, :, 0, 0] + x["motion"][:, 0, :, 0, 0])


def collate(items):
    return ((batch_inputs([it[0] for it in items]),), torch.tensor([it[1] for it in items]),
            torch.tensor([it[2] for it in items]))


def ms_per_step(path: str) -> float:
    ds = MPTDataset(inputs, samples, CLASSES, flip=True)
    generator = torch.Generator().manual_seed(0)
    if path == "loader":
        ds.generator = generator
        loader = DataLoader(ds, batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(0),
                            collate_fn=collate)
    else:
        loader = DeviceBatches(ds.device_view(), torch.device("cpu"), batch_size=32, shuffle=True,
                               generator=generator, augment=True)
    start = time.perf_counter()
    history = train_model(Trivial(), loader, epochs=5, optimizer=OptimConfig("sgd", lr=0.01), device="cpu",
                          progress=False, amp=False)
    return (time.perf_counter() - start) / sum(h["steps"] for h in history) * 1000


if __name__ == "__main__":
    for _ in range(2):
        for name in ("loader", "device"):
            print(name, f"{ms_per_step(name):.2f} ms/step")
