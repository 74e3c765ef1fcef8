# CPU proxy of issue 12 §3 (run: .venv/bin/python tools/bench_datapath.py)
"""CPU proxy for issue 12 §3: loop overhead per step with a trivial model (data path only)."""
import time, torch
from torch import nn
from mernb.data.records import Sample
from mernb.experiments.mpt import MPTDataset
from mernb.train.device_data import DeviceBatches
from mernb.train.loop import OptimConfig, train_model
from torch.utils.data import DataLoader
torch.set_num_threads(1)
N, S, T = 256, 112, 8
samples = [Sample("casme2", f"{i//8}", f"c{i}", 0, None, 10, "happiness") for i in range(N)]
inputs = {s.sample_id: {"image": torch.randn(3, S, S), "motion": torch.randn(T, 3, S, S)} for s in samples}
class Trivial(nn.Module):
    def __init__(self):
        super().__init__(); self.w = nn.Linear(3, 5)
    def forward(self, x):
        return self.w(x["image"][:, :, 0, 0] + x["motion"][:, 0, :, 0, 0])
def run(path):
    ds = MPTDataset(inputs, samples, ["happiness", "x", "y", "z", "w"], flip=True)
    g = torch.Generator().manual_seed(0)
    if path == "loader":
        ds.generator = g
        from mernb.experiments.mpt import batch_inputs
        loader = DataLoader(ds, batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(0),
                            collate_fn=lambda items: ((batch_inputs([it[0] for it in items]),), torch.tensor([it[1] for it in items]), torch.tensor([it[2] for it in items])))
    else:
        loader = DeviceBatches(ds.device_view(), torch.device("cpu"), batch_size=32, shuffle=True, generator=g, augment=True)
    m = Trivial()
    t = time.perf_counter()
    hist = train_model(m, loader, epochs=5, optimizer=OptimConfig("sgd", lr=0.01), device="cpu", progress=False, amp=False)
    steps = sum(h["steps"] for h in hist)
    return (time.perf_counter() - t) / steps * 1000
for rep in range(2):
    for path in ("loader", "device"):
        print(path, f"{run(path):.2f} ms/step")
