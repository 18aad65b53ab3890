"""torchvision 0.28.0 as an oracle: its model definitions, imported beside the CPU build of torch 2.13.0.

The registry's torchvision wheel is built against CUDA torch and registers its C++ operators (nms, …) against
schemas that the CPU torch lacks, so a plain ``import torchvision`` fails with "operator torchvision::nms does not
exist" — and so does anything that imports it when it is installed, such as Hugging Face transformers' models.
Defining the two schemas it checks first (``torchvision::nms`` and ``torchvision::qnms``) is enough for the model
definitions to import and build; the detection operators themselves stay unusable, and no test needs them.

conftest.py calls :func:`define_missing_schemas` before any test module is imported. ``torchvision()`` returns the
module, or skips the test where torchvision is not installed.
"""

import importlib
import importlib.util

import pytest

_kept = []                  # the Library objects: their schemas go when they are collected


def define_missing_schemas() -> None:
    """Define ``torchvision::nms`` and ``torchvision::qnms`` where torchvision is installed and torch lacks them."""
    if importlib.util.find_spec("torchvision") is None or importlib.util.find_spec("torch") is None or _kept:
        return
    import torch
    library = torch.library.Library("torchvision", "FRAGMENT")
    for schema in ("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
                   "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor"):
        try:
            library.define(schema)
        except RuntimeError:          # already defined: a torchvision built for this torch
            pass
    _kept.append(library)


def torchvision():
    if importlib.util.find_spec("torchvision") is None:      # (importorskip would import it: the failure above)
        pytest.skip("torchvision (test extra) is not installed")
    define_missing_schemas()
    return importlib.import_module("torchvision")
