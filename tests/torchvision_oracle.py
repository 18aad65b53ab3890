"""torchvision 0.28.0 as an oracle: its model definitions, imported beside the CPU build of torch 2.13.0.

The registry's torchvision wheel is built against CUDA torch and registers its C++ operators (nms, …) against
schemas that the CPU torch lacks, so a plain ``import torchvision`` fails with "operator torchvision::nms does not
exist". Defining the two schemas it checks first (``torchvision::nms`` and ``torchvision::qnms``) is enough for
the model definitions to import and build; the detection operators themselves stay unusable, and no test needs them.

``torchvision()`` returns the module, or skips the test where torchvision is not installed.
"""

import functools

import pytest


@functools.lru_cache(maxsize=None)
def _import():
    torch = pytest.importorskip("torch")
    try:
        import torchvision
        return torchvision
    except (RuntimeError, ImportError):
        pass
    library = torch.library.Library("torchvision", "FRAGMENT")
    library.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    library.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _import.library = library            # kept alive: the schemas go when the Library object is collected
    import importlib
    import sys
    for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
        del sys.modules[name]            # a failed first import leaves half-initialized modules behind
    return importlib.import_module("torchvision")


def torchvision():
    import importlib.util
    if importlib.util.find_spec("torchvision") is None:      # (importorskip would import it: the failure above)
        pytest.skip("torchvision (test extra) is not installed")
    return _import()
