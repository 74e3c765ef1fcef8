"""Import hook that lets the registry's CUDA-linked torchvision 0.28.0 import on a CPU-only torch.

torchvision registers fake kernels for ``torchvision::nms``/``qnms`` at import time without checking
that its compiled ops loaded; on CPU torch they did not, so the import fails. Before torchvision is
imported we try to load its compiled library; only if that fails do we define the two op schemas and
a pure-torch CPU ``nms`` kernel. Where the compiled ops load (CUDA torch) this does nothing.
Installed into the venv's site-packages by ``tools/install.sh`` (with a one-line ``.pth`` file).
"""

import importlib.abc
import importlib.util
import sys

_patched = False
_library = None


def _nms_cpu(boxes, scores, iou_threshold):
    import torch

    if boxes.numel() == 0:
        return torch.empty((0,), dtype=torch.long, device=boxes.device)
    x1, y1, x2, y2 = boxes.unbind(1)
    area = (x2 - x1) * (y2 - y1)
    order = scores.argsort(descending=True)
    kept = []
    while order.numel():
        best, rest = order[0], order[1:]
        kept.append(best)
        w = (torch.minimum(x2[best], x2[rest]) - torch.maximum(x1[best], x1[rest])).clamp(min=0)
        h = (torch.minimum(y2[best], y2[rest]) - torch.maximum(y1[best], y1[rest])).clamp(min=0)
        inter = w * h
        order = rest[inter / (area[best] + area[rest] - inter) <= iou_threshold]
    return torch.stack(kept)


def _prepare(package_dir: str) -> None:
    global _patched, _library
    import glob
    import os

    import torch

    for lib in glob.glob(os.path.join(package_dir, "_C*.so")):
        try:
            torch.ops.load_library(lib)
            return  # compiled ops work: leave torchvision alone
        except OSError:
            break
    _library = torch.library.Library("torchvision", "DEF")
    _library.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _library.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _library.impl("nms", _nms_cpu, "CPU")
    _patched = True


class _TorchvisionFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name != "torchvision":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            return spec
        _prepare(list(spec.submodule_search_locations)[0])
        if _patched:
            original = spec.loader.exec_module

            def exec_module(module):
                original(module)
                import torchvision.ops.boxes as boxes

                boxes._assert_has_ops = lambda: None

            spec.loader.exec_module = exec_module
        return spec


if "torchvision" not in sys.modules:
    sys.meta_path.insert(0, _TorchvisionFinder())
