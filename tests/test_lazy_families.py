"""The layer families a convolutional spec does not need are imported on first need (start-up of `layercalc
summary`), and nothing can tell: every type parses, every table is complete when read, the order of the schema and
of the command list is the families' order whatever loads first. Each check runs in a fresh interpreter."""

import json
import subprocess
import sys

LATER = ["attention", "depthwise", "merge", "norm", "recurrent", "resample", "sequence", "tensor_ops"]


def fresh(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout


def loaded() -> str:
    return "sorted(m.split('.')[-1] for m in sys.modules if m.startswith('layercalc.layers.') and m[17:] != 'base')"


def test_a_cnn_spec_imports_only_the_first_families():
    out = fresh("import sys, layercalc\n"
                "net = layercalc.load('examples/mnist_cnn.yaml'); net.analyze()\n"
                f"print({loaded()})")
    assert not set(LATER) & set(eval(out))


def test_a_later_type_loads_them_and_parses():
    out = fresh("import sys, layercalc\n"
                "r = layercalc.load({'input': [10, 16], 'layers': [{'type': 'LSTM', 'units': 32}]}).analyze()\n"
                f"print(r.totals.params, {loaded()})")
    params, families = out.split(" ", 1)
    assert int(params) == 4 * (32 * 16 + 32 * 32 + 32)       # Keras' LSTM (one bias vector): 6,272
    assert set(LATER) <= set(eval(families))


def test_a_later_type_imports_the_later_families_only_up_to_its_own():
    # norm and merge come first in LATER_FAMILIES: a ResNet spec (batch norms, residual adds) imports those two
    out = fresh("import sys, layercalc\n"
                "r = layercalc.load('zoo:resnet18').analyze()\n"
                f"print(r.totals.params, {loaded()})")
    params, families = out.split(" ", 1)
    assert int(params) == 11_689_512                           # torchvision's resnet18
    assert set(LATER) & set(eval(families)) == {"norm", "merge"}
    # a Keras DepthwiseConv2D (by its Keras class name) finds its family, third: C_in·m·3·3 + C_in·m = 8·2·9 + 16
    out = fresh("import sys, layercalc\n"
                "r = layercalc.load({'input': [6, 6, 8], 'layout': 'NHWC', 'layers': [\n"
                "    {'type': 'DepthwiseConv2D', 'kernel_size': 3, 'depth_multiplier': 2}]}).analyze()\n"
                f"print(r.totals.params, {loaded()})")
    params, families = out.split(" ", 1)
    assert int(params) == 8 * 2 * 9 + 16
    assert set(LATER) & set(eval(families)) == {"norm", "merge", "depthwise"}


def test_the_order_is_the_same_when_the_families_load_in_steps():
    code = ("import json, layercalc, layercalc.layers as L\n"
            "layercalc.load({'input': [3, 8, 8], 'layers': [{'type': 'batchnorm2d'}]})\n"
            "L.load_all_families()\n"
            "print(json.dumps([c.model_fields['type'].default for c in L.LAYER_CLASSES]))")
    builtin = json.loads(fresh("import json, layercalc.layers as L\nL.load_all_families()\n"
                               "print(json.dumps([c.model_fields['type'].default for c in L.LAYER_CLASSES]))"))
    assert json.loads(fresh(code)) == builtin


def test_the_tables_and_classes_read_complete():
    out = fresh("import layercalc.layers as L\n"
                "print(json.dumps(['lstm' in L.LAYER_TYPES, 'LSTM' in L.KERAS_CLASSES, L.LSTM.__name__]))"
                .replace("import layercalc", "import json, layercalc"))
    assert json.loads(out) == [True, True, "LSTM"]


def test_the_order_is_the_families_order_whatever_registers_first():
    """A user's type registered before the later families load still comes after every built-in."""
    code = ("import json, layercalc.layers as L\n"
            "from typing import Literal\n"
            "@L.register_layer\n"
            "class Mine(L.LayerBase):\n"
            "    type: Literal['mine_example'] = 'mine_example'\n"
            "    def infer(self, inputs, ctx): return None\n"
            "print(json.dumps([c.model_fields['type'].default for c in L.LAYER_CLASSES]))")
    with_user = json.loads(fresh(code))
    builtin = json.loads(fresh("import json, layercalc.layers as L\nL.load_all_families()\n"
                               "print(json.dumps([c.model_fields['type'].default for c in L.LAYER_CLASSES]))"))
    assert with_user == builtin + ["mine_example"]


def test_every_layer_class_is_a_name_of_the_package_and_of_layercalc():
    out = fresh("import json, layercalc, layercalc.layers as L\n"
                "names = [c.__name__ for c in L.LAYER_CLASSES]\n"
                "print(json.dumps([n for n in names if getattr(L, n, None) is None or getattr(layercalc, n) is None]))")
    assert json.loads(out) == []
