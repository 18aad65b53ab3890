"""What every layer type shares: field types, the :class:`LayerBase` protocol, and the registry.

A layer type is a Pydantic model (its description: the fields a spec writes) with methods that the engines call —
only :meth:`LayerBase.infer` is required:

- ``infer(inputs, ctx) -> Facts``: output shape, params, buffers, MACs, FLOPs, receptive field, notes;
- ``param_specs(step, channels_last)``: each parameter's PyTorch shape and initialization (for ``run``/``verify``);
- ``forward(step, xs, params, env)``: the NumPy forward step (absent: the type is analysis-only);
- ``scratch_bytes(step, itemsize, channels_last, weights_given)``: temporaries of the forward step, for the memory
  estimate (an upper bound);
- ``explain(c, input_shapes, facts, channels_last)`` and ``explain_field(c, facts, input_rf)``: worked formulas;
- ``keras_weights(step, class_name, variables)``: the parameters from the variables Keras saved for the layer (a
  type whose Keras class has weights).

:func:`register_layer` makes a type known everywhere: specs, the Python API, the JSON Schema, ``summary``, its own
calculator command, and ``verify``/``run`` when it has a forward step. Built-in types are registered by their family
modules (:mod:`layercalc.layers.conv`, …); installed packages add theirs through the ``layercalc.layers`` entry point
group, loaded on first need (:func:`load_plugins`).

Field names follow the PyTorch constructor arguments; Keras names are accepted as aliases (``filters``,
``units``, ``pool_size``, ``strides``, ``use_bias``, ``dilation_rate``, ``rate``, ``axis``, ``target_shape``).
These models only check that each field is well formed on its own (positive sizes, the right number of
per-dimension values); whether a layer fits the shape that reaches it is decided in :mod:`layercalc.rules`.

Tuple-valued fields (``kernel_size``, ``stride``, ``dilation``, …) accept an int or one value per spatial
dimension and are stored as tuples of the layer's spatial rank. ``padding`` is stored either as the string
``"same"``/``"valid"`` or as one ``(before, after)`` pair per spatial dimension.

Values are taken as written, never coerced into something else (Pydantic's lax mode would): an integer field
takes an integer, or an integral float such as ``3.0`` (the same number), and refuses booleans (``true`` is not
a kernel of 1), strings (``"3"``), fractions (``2.9`` is not 2) and floats too large to be exact (``1e30``). A
real-valued field (``eps``, ``momentum``, ``negative_slope``, ``p``) takes a finite int or float, never NaN or an
infinity. An on/off field takes ``true`` or ``false`` only. See :func:`layercalc.errors.whole_number_problem`.
"""

# No `from __future__ import annotations` here: pydantic evaluates the fields' annotations of LayerBase again for
# every subclass, and string annotations cost an eval each (measured: half the time of defining the layer models).
# Function annotations naming types imported for type checking only are written as strings.

import importlib
import importlib.util
import numbers
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Optional, Union, get_args

from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_serializer,
)
from pydantic_core import PydanticCustomError

from ..errors import (
    InvalidDescription,
    LayerCalcError,
    SpecError,
    boolean_problem,
    describe_validation_error,
    did_you_mean,
    layer_label,
    own_error,
    real_number_problem,
    safe_text,
    shown,
    whole_number_problem,
)
from ..names import split_output

if TYPE_CHECKING:                     # the engines' types, for annotations only (no import cycle at run time)
    import numpy as np
    from pydantic import ValidationError
    from typing_extensions import Self

    from ..executor import Env
    from ..explain import Explanation
    from ..graph import Step
    from ..rules import Backward, Context, Facts, Gradients, Tensor

#: the most dimensions a tensor may have: NumPy's limit (PyTorch's is lower), so every shape can also be executed
MAX_RANK = 64


def _whole_number(value: Any) -> Any:
    """Before-validator of every integer field: refuse what lax mode would coerce; ``3.0`` → ``3``."""
    problem = whole_number_problem(value)
    if problem is not None:
        raise PydanticCustomError("whole_number", problem)
    # an integral float (3.0, NumPy's float32(3)) is the int it equals; integers go on unchanged
    # (through float: exact, since whole_number_problem refused a Real that is not exactly a float)
    return int(float(value)) if isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral) else value


def _real_number(value: Any) -> Any:
    """Before-validator of every real-valued field: no booleans, strings, NaN or infinities."""
    problem = real_number_problem(value)
    if problem is not None:
        raise PydanticCustomError("real_number", problem)
    return value


def _boolean(value: Any) -> Any:
    """Before-validator of every on/off field: ``true``/``false`` only (lax mode reads 0, 1, "yes", "off"...)."""
    problem = boolean_problem(value)
    if problem is not None:
        raise PydanticCustomError("boolean", problem)
    return bool(value)                                  # NumPy's np.True_ → True


# The constraint comes before the validator so that it stays part of the int schema: the JSON Schema then says
# {"type": "integer", "minimum": 1} (after it, Pydantic would wrap it in a function and drop it from the schema).
Int = Annotated[int, BeforeValidator(_whole_number)]
PositiveInt = Annotated[int, Field(ge=1), BeforeValidator(_whole_number)]
NonNegativeInt = Annotated[int, Field(ge=0), BeforeValidator(_whole_number)]
Float = Annotated[float, Field(allow_inf_nan=False), BeforeValidator(_real_number)]
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False), BeforeValidator(_real_number)]
Probability = Annotated[float, Field(ge=0, lt=1, allow_inf_nan=False), BeforeValidator(_real_number)]
Bool = Annotated[bool, BeforeValidator(_boolean)]
IntOrList = Union[PositiveInt, list[PositiveInt]]
PaddingSpec = Union[
    NonNegativeInt,
    Literal["same", "valid"],
    list[NonNegativeInt],
    list[Annotated[list[NonNegativeInt], Field(min_length=2, max_length=2)]],
]
Pairs = tuple[tuple[int, int], ...]
#: Keras' ``data_format`` argument of spatial layers: the layout the layer expects. It must agree with the network's
#: layout (checked for every layer that has the field, in :func:`layercalc.rules.infer`); None: the network's.
DataFormat = Optional[Literal["channels_last", "channels_first"]]


def data_format_field() -> Any:
    """The ``data_format`` field of a spatial layer (Keras' argument)."""
    return Field(None, description="Keras' data_format: channels_last (NHWC) or channels_first (NCHW); must agree "
                                   "with the network's layout")

# The per-dimension fields as a type checker sees them: their values once validated. A spec or a constructor gives an
# int or a list (IntOrList, PaddingSpec: what validation and the JSON Schema accept, the run-time annotations); the
# family's model validator stores a tuple of the layer's spatial rank — padding as "same", "valid" or one
# (before, after) pair per dim — and that is what every reader of the attribute gets. (Constructor arguments stay
# open: the pydantic mypy plugin types them as Any.) Their defaults are written as a spec would write them, through
# per_dim_default: the model validator turns them into the stored tuple exactly as it does a written value.
if TYPE_CHECKING:
    PerDim = tuple[int, ...]
    OptionalPerDim = tuple[int, ...]                      # None (pooling's stride) → the kernel size
    NonNegativePerDim = tuple[int, ...]
    PaddingField = Union[str, Pairs]
else:
    PerDim = IntOrList
    OptionalPerDim = Optional[IntOrList]
    NonNegativePerDim = Union[NonNegativeInt, list[NonNegativeInt]]
    PaddingField = PaddingSpec


def per_dim_default(value: Union[int, str, None]) -> Any:
    """The default of a per-dimension field as a spec writes it (``1``, ``0``, ``None``), which the family's model
    validator turns into the stored tuple like a written value.

    Typed ``Any`` so that a type checker, which sees the field as the stored tuple, accepts the int. (Pydantic's
    ``validate_default=True`` would do that too, at the price of validating every default of every layer: two
    validator calls per conv, a twentieth of the time to load a 10,000-layer spec.)
    """
    return value


#: the longest layer name accepted (torchvision's longest module names are under 40 characters)
MAX_NAME_LENGTH = 200


def check_name(name: str) -> None:
    """A layer name must be printable text of at most :data:`MAX_NAME_LENGTH` characters.

    >>> check_name('layer3.2.conv1')
    >>> check_name('a\x1b[2Jb')
    Traceback (most recent call last):
    ...
    ValueError: a name must be printable text (no control characters such as newlines or terminal escapes)
    """
    if len(name) > MAX_NAME_LENGTH:
        raise ValueError(f"a name may have at most {MAX_NAME_LENGTH} characters, got {len(name):,}")

    if not name.isprintable():
        raise ValueError("a name must be printable text (no control characters such as newlines or terminal "
                         "escapes)")


def _printable(name: str) -> str:
    check_name(name)
    return name


def _layer_name(name: str) -> str:
    check_name(name)
    if split_output(name)[1] is not None:
        raise ValueError(f"a layer's name may not end in ':' and digits ({name!r}): NAME:0, NAME:1 … name the "
                         f"outputs of a layer with several")
    return name


def _printable_names(names: list[str]) -> list[str]:
    for name in names:
        check_name(name)
    return names


# The names a layer's fields hold, validated where they are declared (annotations, not field validators: every
# subclass of LayerBase would copy a field validator, and class creation is most of `layercalc summary`'s start-up).
# Names are printed in tables and messages: a control character could rewrite the terminal, a huge name would make
# every line about the layer huge.
PrintableName = Annotated[str, AfterValidator(_printable)]
LayerName = Annotated[str, Field(min_length=1), AfterValidator(_layer_name)]
#: one name (a layer with one input) or a list of them
TensorNames = Annotated[list[str], BeforeValidator(lambda value: [value] if isinstance(value, str) else value),
                        AfterValidator(_printable_names)]


def _alias(*names: str) -> AliasChoices:
    return AliasChoices(*names)


def _per_dim(value: Any, rank: int, field: str) -> tuple[int, ...]:
    """An int or a list of ``rank`` ints → a tuple of ``rank`` ints."""
    if isinstance(value, int):
        return (value,) * rank
    value = tuple(value)
    if len(value) == 1:
        return value * rank
    if len(value) != rank:
        raise ValueError(f"{field} needs 1 or {rank} values (one per spatial dimension), got {shown(list(value))}")
    return value


def _padding_pairs(value: Any, rank: int, field: str = "padding") -> str | Pairs:
    """Normalize every accepted padding form to ``"same"``, ``"valid"`` or ``rank`` (before, after) pairs."""
    if isinstance(value, str):
        return value
    return _explicit_pairs(value, rank, field)


def _explicit_pairs(value: Any, rank: int, field: str = "padding") -> Pairs:
    """An int, one int per dim, or [before, after] pairs (one, or one per dim) → ``rank`` (before, after) pairs."""
    if isinstance(value, int):
        return ((value, value),) * rank
    value = list(value)
    if value and all(isinstance(v, (list, tuple)) for v in value):
        pairs = tuple((int(b), int(a)) for b, a in value)
        if len(pairs) == 1:
            return pairs * rank
        if len(pairs) != rank:
            raise ValueError(f"{field} needs 1 or {rank} [before, after] pairs, got {shown(value)}")
        return pairs
    if any(isinstance(v, (list, tuple)) for v in value):
        raise ValueError(f"{field} mixes ints and [before, after] pairs: {shown(value)}")
    return tuple((p, p) for p in _per_dim(value, rank, field))


def _as_lists(value: Any) -> Any:
    return [_as_lists(v) for v in value] if isinstance(value, (tuple, list)) else value


def _lower_string(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


class Description(BaseModel):
    """A validated description (a layer, a network): built once, never changed.

    Python callers get the same errors as spec files: a failed validation raises :class:`SpecError` with the
    one-line message the CLI prints, never pydantic's ``ValidationError``. Assigning a field afterwards is refused
    (a changed ``out_channels`` would skip validation and give negative figures): :meth:`replace` returns a
    validated copy instead.
    """

    model_config = ConfigDict(defer_build=True)

    def __init__(self, /, **data: Any) -> None:
        from pydantic import ValidationError

        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise InvalidDescription(self._describe_label(data), self.describe_error(exc, data)) from None

    @classmethod
    def _describe_label(cls, data: dict) -> str:
        return cls.__name__

    @classmethod
    def _field_names(cls) -> list[str]:
        return list(cls.model_fields)

    @classmethod
    def _help_texts(cls) -> dict[str, str]:
        return {}

    @classmethod
    def describe_error(cls, exc: "ValidationError", data: Any) -> str:
        """The one-line detail of a failed validation of ``data`` as this description.

        Pydantic calls ``__init__`` from ``model_validate`` too, and wraps what it raises (a ``ValueError``) in a
        new ``ValidationError``: an :class:`InvalidDescription` of this class is unwrapped to its detail, and one
        from a nested description (a layer inside a network) is raised as it is — it already names its layer.
        """
        inner = own_error(exc)
        if isinstance(inner, InvalidDescription) and inner.label == cls._describe_label(
                data if isinstance(data, dict) else {}):
            return inner.detail
        if inner is not None:
            raise inner
        return describe_validation_error(exc, data, cls._field_names(), cls._help_texts())

    def __setattr__(self, name: str, value: Any) -> None:
        raise SpecError(f"{self._describe_label(dict(self))}: cannot set {safe_text(name)!r}: a description is not "
                        f"changed once validated; use .replace({safe_text(name)}=...) for a validated copy")

    def __delattr__(self, name: str) -> None:
        raise SpecError(f"{self._describe_label(dict(self))}: cannot delete {safe_text(name)!r}: a description is "
                        f"not changed once validated")

    def replace(self, **changes: Any) -> "Self":
        """A validated copy with some fields changed (``net.replace(batch=8)``, ``conv.replace(stride=2)``)."""
        fields = {name: getattr(self, name) for name in type(self).model_fields}
        return type(self)(**{**fields, **changes})


class LayerBase(Description):
    """Fields every layer has: an optional ``name`` and the names of its ``inputs``."""

    # protected_namespaces=(): pydantic's check that no field name starts with model_validate/model_dump runs for
    # every field of every layer class at import (a few percent of defining them); layer fields are never so named,
    # and a field that shadows a BaseModel method is still warned about (pydantic's own check).
    model_config = ConfigDict(extra="forbid", populate_by_name=True, defer_build=True, protected_namespaces=())

    #: how many inputs the layer takes (``None``: any number ≥ min_inputs)
    min_inputs: ClassVar[int] = 1
    max_inputs: ClassVar[Optional[int]] = 1
    #: spatial rank the layer needs (``None``: any, or none)
    spatial_dims: ClassVar[Optional[int]] = None

    name: Optional[LayerName] = Field(None, description="unique name; default '<type>_<index>'")
    inputs: Optional[TensorNames] = Field(
        None, description="names of the layers feeding this one ('input' is the network input); default: previous "
                          "layer")
    tied_to: Optional[PrintableName] = Field(
        None, description="name of another layer whose parameters this one uses (tied weights, counted once there): "
                          "GPT-2's output head and its token embedding")
    trainable: Bool = Field(True, description="Keras' trainable: false freezes the layer: its parameters stay "
                                              "params, and Keras' totals count them as non-trainable")

    @classmethod
    def _describe_label(cls, data: dict) -> str:
        name = data.get("name")
        return layer_label(None, name if isinstance(name, str) else None, _type_names(cls)[0])

    @classmethod
    def _field_names(cls) -> list[str]:
        return accepted_fields(cls)

    @classmethod
    def _help_texts(cls) -> dict[str, str]:
        return _field_help(cls)

    @field_serializer("*", mode="plain")
    def _tuples_as_lists(self, value: Any) -> Any:
        # Normalized per-dimension fields are stored as tuples; dumped, they read as the lists a spec holds.
        return _as_lists(value)

    @property
    def type_name(self) -> str:
        return self.type  # type: ignore[attr-defined]

    #: Keras class names this type implements (``type: MaxPooling2D`` in a spec, and the Keras importer), each with
    #: the fields its Keras meaning implies where Keras' default differs from this type's (``{"LSTM":
    #: {"convention": "keras"}}``). Written exactly as Keras spells the class; the type's own names stay
    #: case-insensitive.
    keras_classes: ClassVar[dict[str, dict[str, Any]]] = {}

    @classmethod
    def from_keras(cls, class_name: str, fields: dict[str, Any]) -> dict[str, Any]:
        """The fields of a layer written with a Keras class name (``type`` excluded), as this type reads them: the
        implied fields added where the spec gives none of their spellings. A type whose Keras arguments need more
        than names (Keras' Permute counts dims from 1) overrides it; a ValueError names what cannot be read."""
        spellings = field_spellings(cls)
        implied = {k: v for k, v in cls.keras_classes[class_name].items()
                   if not any(s in fields for s in spellings.get(k, [k]))}
        return {**implied, **fields}

    def keras_weights(self, step: "Step", class_name: str,
                      variables: "dict[str, list[np.ndarray]]") -> "dict[str, np.ndarray]":
        """This layer's parameters (:meth:`param_specs`' names, PyTorch's layouts) from the variables Keras saved for
        it (``model.weights.h5``). ``variables`` maps each object of the layer that holds some — ``""`` the layer
        itself, ``"cell"`` a recurrent layer's cell, ``"query_dense"`` … — to its arrays in Keras' order
        (``layer.weights``); :func:`keras_variables` names them. A type implementing a Keras class with weights
        overrides this; here, a layer holding variables is an error naming them (never a run on made-up weights)."""
        held = {group: arrays for group, arrays in variables.items() if len(arrays)}
        if held:
            raise SpecError(f"weights for {layer_label(step.index, step.name, self.type_name)}: Keras {class_name} "
                            f"saved {_variables_text(held)}, and layercalc's {self.type_name!r} type has no mapping "
                            f"of Keras weights")
        return {}

    def output_activation(self) -> Optional[str]:
        """The type name of the activation the layer applies to its own output as part of itself (Keras'
        ``activation`` argument, composed in :class:`~layercalc.layers.fused.FusedActivation`): the report's
        ``activation``. None: none."""
        return None

    # --------------------------------------------------------------------------------------------- the protocol

    #: the output is finite whenever the inputs are (a maximum, a copy, a bounded function): the executor then
    #: skips its overflow check for this layer
    keeps_finite: ClassVar[bool] = False
    #: the output depends on the inputs' values (False: only on their shapes, as a position embedding sized by its
    #: input): a field that is the whole input then carries on through the layer (see rules.whole_from_inputs)
    reads_input_values: ClassVar[bool] = True
    #: the layer is another input of the network (a decoder's tokens): its ``shape`` field is that input's shape
    #: without the batch, which a sweep (layercalc.sweep) may vary as it varies the network's ``input``
    is_network_input: ClassVar[bool] = False

    def input_shape(self) -> Optional[list[int]]:
        """When the layer is another input of the network (``extra_input``), its shape without the batch: a run
        feeds it an array of that shape (``Env.feed``) and ``Network.replace_inputs`` sets it; else None."""
        return None

    def with_input_shape(self, shape: list[int]) -> "LayerBase":
        """A copy of a network-input layer (:meth:`input_shape` not None) taking inputs of ``shape``."""
        raise NotImplementedError(f"layer type {self.type_name!r} is not an input of the network")

    def index_count(self) -> Optional[int]:
        """When the layer reads its input as integer indices (token ids), how many there are (an embedding's
        vocabulary): a run without given input then draws token ids below it instead of real numbers."""
        return None

    def infer(self, inputs: "list[Tensor]", ctx: "Context") -> "Facts":
        """Required: what the layer does to the tensors reaching it (shape, params, MACs, FLOPs, field, notes).

        Raise ``ctx.fail(message)`` when the layer cannot apply to these inputs."""
        raise NotImplementedError(f"layer type {self.type_name!r} ({type(self).__name__}) has no infer() rule")

    def param_specs(self, step: "Step", channels_last: bool) -> "dict[str, ParamSpec]":
        """Each parameter and buffer the forward step reads, in PyTorch's layout and order (``weight`` first): its
        shape and how a run without given weights initializes it. ``step``: the resolved layer (``graph.Step``)."""
        return {}

    def derived_buffers(self, step: "Step") -> "dict[str, np.ndarray]":
        """Tensors a framework saves beside the layer's weights that the layer computes from its own fields
        (torchvision's Swin: ``relative_position_index``, from the window size), by key. A weights file may hold
        them (``NAME.<key>``); each must equal what the layer computes, and is neither read nor counted (not a
        parameter, and not state: nothing a run or training changes)."""
        return {}

    @classmethod
    def runnable(cls) -> bool:
        """Whether the type has a forward step (``verify``/``run`` can execute it)."""
        return cls.forward is not LayerBase.forward

    def forward(self, step: "Step", xs: "list[np.ndarray]", params: "dict[str, np.ndarray]",
                env: "Env") -> "np.ndarray":
        """The NumPy forward step: ``xs`` the input arrays, ``params`` from :meth:`param_specs`, ``env`` the
        executor's environment (layout, workspace, MAC counter). Kernels are imported here, never at module level,
        so that analysis never loads NumPy."""
        raise not_runnable(step)

    def scratch_bytes(self, step: "Step", itemsize: int, channels_last: bool, weights_given: bool) -> tuple[int, int]:
        """(bytes the forward step allocates beyond its inputs and output, im2col workspace bytes): an upper bound,
        for the executor's memory estimate. ``weights_given``: the parameters were passed in (already held)."""
        return 0, 0

    def layout_problem(self, channels_last: bool) -> Optional[str]:
        """Why the layer cannot run in the network's layout (Keras' ``data_format`` of a spatial layer, which
        :func:`data_format_field` adds, must agree with it), or None."""
        data_format = self.__dict__.get("data_format")    # (getattr on a type without it: pydantic's slow path)
        if data_format is None or (data_format == "channels_last") == channels_last:
            return None
        layout = "NHWC (channels_last)" if channels_last else "NCHW (channels_first)"
        return (f"data_format {data_format!r} does not match the network's layout {layout}: set the network's layout "
                f"to {data_format}")

    def kv_cache_elements(self, facts: "Facts") -> int:
        """Elements this layer keeps for generation after its forward pass (the keys and values of causal
        self-attention, at the past + new positions): 0 for every layer that keeps none (docs/conventions.md,
        "Serving"). ``facts``: the layer's resolved facts (``Context.past`` already in them)."""
        return 0

    def weight_elements_read(self, facts: "Facts") -> int:
        """Parameter and buffer elements one forward pass reads (a decode step's memory traffic): all of them by
        default; a lookup table only the rows it looks up. ``facts.params`` includes the parameters tied to another
        layer that this one reads too (the caller adds ``facts.geometry["tied_params"]``)."""
        return facts.params + facts.buffers

    def flop_counter_text(self, macs_text: str) -> str:
        """What PyTorch's ``torch.utils.flop_counter.FlopCounterMode`` reports for this layer (on CPU), for the
        calculator's FLOPs line: ``macs_text`` is 2·MACs, written out. It counts 2·MACs of the matmuls and
        convolutions it sees and 0 for element-wise work; a type whose PyTorch kernel it does not see says so."""
        return f"torch.utils.flop_counter counts 2·MACs = {macs_text}"

    def idle_params(self, facts: "Facts") -> int:
        """Parameters a token's forward pass does not use: a mixture of experts' experts the router does not choose
        (E − k of them). The report's ``active_params`` is ``params`` minus these. Default 0: every parameter is
        active."""
        return 0

    def idle_macs(self, facts: "Facts") -> int:
        """Multiply-accumulates the layer would add if every expert ran on every token (a mixture of experts; its
        ``macs`` count only the top-k it runs). The report's ``all_experts_macs`` is ``macs`` plus these. Default
        0: the layer computes all it has."""
        return 0

    def backward(self, step: "Step", grads: "Gradients") -> "Optional[Backward]":
        """The cost of the layer's backward pass (:class:`~layercalc.rules.Backward`: MACs of the gradients with
        respect to activations and to parameters, separately, element FLOPs, worked lines for ``--explain``), given
        which gradients the graph needs (:class:`~layercalc.rules.Gradients`: per input, and for the parameters).
        Called only when some gradient passes through the layer. Every built-in family overrides it; here, None:
        the backward is *unknown* (a plugin type that does not state it), and the report says so instead of
        guessing (its backward fields and the network's backward totals are null)."""
        return None

    def explain(self, c: "Explanation", input_shapes: list[tuple[int, ...]], facts: "Facts",
                channels_last: bool) -> None:
        """Worked formulas for ``--explain``: ``c.add(line)`` / ``c.result(label, formula, value, reported)``."""
        c.add(f"{self.type_name}: output {list(facts.output_shape)}")
        if facts.params:
            c.add(f"params = {facts.params:,}")

    def explain_field(self, c: "Explanation", facts: "Facts", input_rf: Optional[tuple[list, list]]) -> None:
        """Worked receptive-field lines (after the memory lines); windowed layers override it."""

    # ------------------------------------------------------------------------------- training: saved for backward

    #: how the output shares memory with input 0 (for the saved tensors, which PyTorch de-duplicates by storage):
    #: ``"new"`` a tensor of its own; ``"view"`` the input's memory (identity, split, slice: a view of it);
    #: ``"strided"`` the input's memory in another order (permute, transpose: a later reshape copies it);
    #: ``"reshape"`` a view of a contiguous input, a copy of a strided one (flatten, reshape: torch's reshape);
    #: ``"parameter"`` a parameter itself (a learnable tensor used as an input: held as a weight, never counted as a
    #: saved activation)
    output_storage: ClassVar[str] = "new"

    def saved_for_backward(self, step: "Step", grads: "GradFlow") -> "Optional[list[Saved]]":
        """The tensors PyTorch's autograd keeps for this layer's backward pass in training mode, given which of its
        inputs need a gradient and whether it has trainable parameters (``grads``): its input k, its output, or
        tensors of its own (a mask, indices, statistics), parameters excluded (held anyway). An empty list: it
        saves nothing; None: not modeled for this type (the training figures then refuse a total and name it).
        Each family states what torch 2.13 saves, measured with ``saved_tensors_hooks`` (docs/conventions.md,
        "Training memory")."""
        return None



def not_runnable(step: "Step") -> LayerCalcError:
    """The error for running a layer whose type has no forward step (``step``: the resolved layer)."""
    label = layer_label(step.index, step.name, step.layer.type_name)
    return LayerCalcError(f"{label}: layer type {step.layer.type_name!r} has no forward step: it can be analyzed "
                          f"(summary, the calculator) but not run (verify and run need a forward method)")


def keras_variables(step: "Step", class_name: str, variables: "dict[str, list[np.ndarray]]",
                    expected: dict[str, list[str]]) -> "dict[str, np.ndarray]":
    """Keras' saved variables of a layer (see :meth:`LayerBase.keras_weights`) by name. ``expected`` lists, per
    object, the names of its variables in Keras' order (``{"": ["kernel", "bias"]}``, ``{"cell": [...]}``); the
    result is keyed ``kernel``, or ``cell/kernel`` under an object. Other objects or counts than expected (another
    class's weights, ``use_bias`` that differs) are a SpecError naming the layer, what was saved and what was
    expected."""
    held = {group: arrays for group, arrays in variables.items() if len(arrays)}
    wanted = {group: names for group, names in expected.items() if names}
    if held.keys() != wanted.keys() or any(len(held[group]) != len(names) for group, names in wanted.items()):
        expect = "; ".join(f"{f'{group}: ' if group else ''}{', '.join(names)}" for group, names in wanted.items())
        raise SpecError(f"weights for {layer_label(step.index, step.name, step.layer.type_name)}: Keras {class_name} "
                        f"saved {_variables_text(held)}; this layer takes {expect or 'no variables'}")
    return {f"{group}/{name}" if group else name: array
            for group, names in wanted.items() for name, array in zip(names, held[group])}


def _variables_text(held: "dict[str, list[np.ndarray]]") -> str:
    """``2 variables [3, 2], [2]`` or ``query_dense: [3, 2, 4]; …``: what a layer's saved variables are."""
    if not held:
        return "no variables"
    parts = [(f"{group}: " if group else "") + ", ".join(str(list(a.shape)) for a in arrays)
             for group, arrays in held.items()]
    count = sum(len(arrays) for arrays in held.values())
    return f"{count} variable{'s' if count != 1 else ''} " + "; ".join(parts)


# The base of a class a family shares between several types that declares no field (methods and ClassVars only: an
# element-wise rule, a reduction's name): a plain class at run time, so pydantic does not define it as one more model
# (each model class copies every inherited field: defining them is most of `layercalc summary`'s start-up), and a
# LayerBase for the type checker, which checks its methods against a layer's attributes. A type lists it before
# LayerBase: `class Add(_ElementwiseMerge, LayerBase)`.
if TYPE_CHECKING:
    LayerMixin = LayerBase
else:
    LayerMixin = object


# GradFlow and Saved are values, never changed once made — but not frozen dataclasses: a frozen one is made 4–5×
# slower (each field set through object.__setattr__), and an analysis makes one GradFlow per layer and a Saved per
# tensor kept (a third of the saved-tensor account's time, measured on Llama-2-7b's 323 layers).
@dataclass(slots=True)
class GradFlow:
    """What a layer's backward pass must produce: which inputs need a gradient (a tensor needs one when it depends
    on a trainable parameter: the network input and integer ids do not), whether the layer has trainable
    parameters, the training dtype's bytes per element and the network's layout."""
    inputs: tuple[bool, ...]
    params: bool
    itemsize: int
    channels_last: bool = False

    @property
    def any(self) -> bool:
        """Whether autograd records the layer at all (a layer nothing of which needs a gradient saves nothing)."""
        return self.params or any(self.inputs)


@dataclass(slots=True)
class Saved:
    """One tensor a layer keeps for its backward pass (see :meth:`LayerBase.saved_for_backward`).

    ``kind``: ``"input"`` (input ``index`` as it reached the layer), ``"output"`` (output ``index``) or ``"extra"``
    (a tensor of the layer's own: a dropout mask, max-pool indices, normalization statistics) of ``numel``
    elements. ``itemsize``: bytes per element when it is not the training dtype's (int64 indices: 8). ``shared``:
    a key naming an extra tensor several layers use (rotary cos/sin tables made once per model): counted once.
    ``what``: why it is kept, for ``--explain``."""
    kind: Literal["input", "output", "extra"]
    what: str
    index: int = 0
    numel: int = 0
    itemsize: Optional[int] = None
    shared: Optional[str] = None


@dataclass(frozen=True)
class ParamSpec:
    """One parameter (or buffer) of a layer, as the executor allocates and checks it.

    ``layout`` says how the shape is made, for messages (``"[out_features, in_features]"``). ``init``: ``"uniform"``
    draws U(−1/√fan_in, 1/√fan_in) (PyTorch's conv and linear), ``"normal"`` N(0, 1) (PyTorch's embeddings),
    ``"ones"`` or ``"zeros"`` (norms, running stats), or a number every element starts at (PReLU's 0.25).
    ``buffer``: non-learnable state (BatchNorm's running statistics), counted in the layer's buffers, not params.
    """
    shape: tuple[int, ...]
    layout: str
    init: Union[Literal["uniform", "normal", "ones", "zeros"], float] = "zeros"
    fan_in: int = 1
    buffer: bool = False


# ------------------------------------------------------------------------------------------------------ registry

#: every registered layer type, in registration order (the order of the schema and of ``layercalc --help``)
LAYER_CLASSES: list[type[LayerBase]] = []
#: every accepted ``type`` string (aliases such as ``dense`` included) → its model class
LAYER_TYPES: dict[str, type[LayerBase]] = {}
#: every Keras class name of :attr:`LayerBase.keras_classes` (``MaxPooling2D``) → the type that implements it
KERAS_CLASSES: dict[str, type[LayerBase]] = {}


def _type_names(cls: "type[LayerBase]") -> tuple[str, ...]:
    return get_args(cls.model_fields["type"].annotation)  # the Literal's values


def register_layer(cls: "type[LayerBase]") -> "type[LayerBase]":
    """Make a layer type known to specs, the Python API, the JSON Schema, ``summary``, the calculators and the
    executor. A class decorator; the class needs a ``type: Literal["name", ...]`` field (its first value is the
    type's name, the others aliases) and an :meth:`~LayerBase.infer` rule.

    >>> from typing import Literal
    >>> @register_layer
    ... class Square(LayerBase):
    ...     type: Literal["square_example"] = "square_example"
    ...     def infer(self, inputs, ctx):
    ...         from layercalc.rules import Facts
    ...         return Facts(output_shape=inputs[0].shape, flops=inputs[0].shape[0])
    >>> LAYER_TYPES["square_example"] is Square
    True
    >>> unregister_layer(Square)
    """
    field = cls.model_fields.get("type") if isinstance(cls, type) and issubclass(cls, LayerBase) else None
    if field is None or getattr(field.annotation, "__origin__", None) is not Literal:
        raise SpecError(f"register_layer: {getattr(cls, '__name__', cls)!r} must be a LayerBase subclass with a "
                        f"field  type: Literal['name'] = 'name'")
    if cls.infer is LayerBase.infer:
        raise SpecError(f"register_layer: {cls.__name__} has no infer() rule (required: what the layer does to the "
                        f"shapes reaching it)")
    if not cls.__module__.startswith(__package__ + "."):
        load_families()                       # a user's type comes after every built-in, and may not shadow one
    for name in _type_names(cls):
        known = LAYER_TYPES.get(name)
        if known is not None and known is not cls:
            raise SpecError(f"register_layer: layer type {name!r} of {cls.__module__}.{cls.__name__} is already "
                            f"registered by {known.__module__}.{known.__name__}")
    for name in cls.keras_classes:
        known = KERAS_CLASSES.get(name)
        if known is not None and known is not cls:
            raise SpecError(f"register_layer: Keras class {name!r} of {cls.__module__}.{cls.__name__} is already "
                            f"implemented by {known.__module__}.{known.__name__}")
    if cls not in LAYER_CLASSES:
        LAYER_CLASSES.append(cls)
        # a family imported directly (``from layercalc.layers.attention import …``) may register before the
        # families listed ahead of it: keep the listed order whatever the import order (a stable sort keeps each
        # family's own order), so the schema and --help do not depend on what was imported first
        LAYER_CLASSES.sort(key=_family_rank)
    LAYER_TYPES.update({name: cls for name in _type_names(cls)})
    KERAS_CLASSES.update({name: cls for name in cls.keras_classes})
    layer_union.cache_clear()
    return cls


#: the families ``layercalc.layers`` imports at start, in their order (then :data:`LATER_FAMILIES`)
FIRST_FAMILIES = ("activation", "conv", "pooling", "linear", "reshape")


def _family_rank(cls: "type[LayerBase]") -> int:
    """Where a class's family comes in the registration order: built-in families as listed, other types after."""
    package, _, family = cls.__module__.rpartition(".")
    order = FIRST_FAMILIES + LATER_FAMILIES
    return order.index(family) if package == __package__ and family in order else len(order)


def unregister_layer(cls: "type[LayerBase]") -> None:
    """Forget a registered type (tests, notebooks that redefine a type)."""
    if cls in LAYER_CLASSES:
        LAYER_CLASSES.remove(cls)
    for name in [n for n, c in LAYER_TYPES.items() if c is cls]:
        del LAYER_TYPES[name]
    for name in [n for n, c in KERAS_CLASSES.items() if c is cls]:
        del KERAS_CLASSES[name]
    layer_union.cache_clear()


#: the families ``layercalc.layers`` does not import at start, imported on first need in this order (their
#: registration order: the order of the schema and of ``layercalc --help``)
LATER_FAMILIES = ("norm", "merge", "depthwise", "sequence", "attention", "tensor_ops", "resample", "recurrent", "moe",
                  "mla", "mask")
_families_imported = 0        # how many of LATER_FAMILIES are imported (always a prefix: the registration order)


def load_families(until: "Optional[Callable[[], bool]]" = None) -> None:
    """Register the built-in layer types: the families of :data:`LATER_FAMILIES` not yet imported are imported,
    all of them (before anything lists the types, and before a user's type registers), or one at a time until
    ``until()`` holds (a spec's type is known: a network of convs and batch norms imports the norm family only).
    Modules by name, as plugins are: this module is below the families, which import it."""
    global _families_imported
    while _families_imported < len(LATER_FAMILIES) and not (until is not None and until()):
        importlib.import_module(f"{__package__}.{LATER_FAMILIES[_families_imported]}")
        _families_imported += 1


def _known_type(type_: str) -> bool:
    return type_ in KERAS_CLASSES or type_.lower() in LAYER_TYPES


@lru_cache(maxsize=1)
def layer_union() -> Any:
    """The union of every registered layer model, discriminated by ``type`` (built for the JSON Schema only)."""
    load_families()
    return Annotated[Union[tuple(LAYER_CLASSES)], Field(discriminator="type")]


#: the module name of a plugin file begins so (the rest is its real path, made an identifier)
_PLUGIN_FILE_PREFIX = "layercalc_plugin_"


def load_plugin_file(path: str) -> None:
    """Import a Python file that registers layer types (``layercalc --plugin FILE.py``); a file already loaded is
    not loaded again. Every failure is one :class:`SpecError` line naming the file."""
    load_families()
    real = os.path.realpath(path)
    name = _PLUGIN_FILE_PREFIX + "".join(c if c.isalnum() else "_" for c in real)
    if name in sys.modules:
        return
    if not os.path.isfile(real):
        raise SpecError(f"--plugin: {safe_text(path)}: no such file")
    spec = importlib.util.spec_from_file_location(name, real)
    if spec is None or spec.loader is None:
        raise SpecError(f"--plugin: {safe_text(path)}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except LayerCalcError as exc:
        del sys.modules[name]
        raise SpecError(f"--plugin: {safe_text(path)}: {exc}") from None
    except BaseException as exc:                   # noqa: BLE001 — the user's code: report it, in one line
        del sys.modules[name]
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        raise SpecError(f"--plugin: {safe_text(path)}: cannot load: {type(exc).__name__}: "
                        f"{safe_text(str(exc))[:300]}") from None


def plugin_module(cls: type) -> "Optional[str]":
    """Where a plugin layer type comes from — its file (``--plugin FILE.py``) or module (an installed package's
    entry point) — or None for a built-in type (a module of layercalc)."""
    module = cls.__module__
    if module == "layercalc" or module.startswith("layercalc."):
        return None
    path = getattr(sys.modules.get(module), "__file__", None)
    return f"plugin file {safe_text(path)}" if module.startswith(_PLUGIN_FILE_PREFIX) and path else f"module {module}"


#: the entry point group through which installed packages add layer types
ENTRY_POINT_GROUP = "layercalc.layers"
_plugins_loaded = False


def load_plugins() -> None:
    """Import every module named in the ``layercalc.layers`` entry point group (each registers its types when
    imported). Done once, on first need: an unknown type in a spec, the schema, the full command list."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    load_families()                           # the built-ins first: their order, and no plugin shadows one
    _plugins_loaded = True
    from importlib.metadata import entry_points

    for entry in entry_points(group=ENTRY_POINT_GROUP):
        try:
            entry.load()
        except Exception as exc:               # noqa: BLE001 — a broken plugin must not break the tool
            raise SpecError(f"layer types of {entry.value!r} (entry point {entry.name!r} in group "
                            f"{ENTRY_POINT_GROUP!r}) cannot be loaded: {type(exc).__name__}: {exc}") from None


def field_spellings(cls: "type[LayerBase]") -> dict[str, list[str]]:
    """Each field of ``cls`` → every name a spec may use for it: its own first, then its Keras aliases."""
    spellings = {}
    for name, info in cls.model_fields.items():
        alias = info.validation_alias
        choices = [c for c in alias.choices if isinstance(c, str)] if isinstance(alias, AliasChoices) else []
        spellings[name] = [name] + [c for c in choices if c != name]
    return spellings


@cache
def _aliased_fields(cls: "type[LayerBase]") -> tuple[tuple[str, tuple[str, ...]], ...]:
    """The fields of ``cls`` that have Keras aliases, with all their spellings (cached: checked for every layer)."""
    return tuple((name, tuple(names)) for name, names in field_spellings(cls).items() if len(names) > 1)


def accepted_fields(cls: "type[LayerBase]") -> list[str]:
    """Every field name a spec may use for ``cls``, Keras aliases included."""
    return sorted({n for names in field_spellings(cls).values() for n in names})


def _field_help(cls: "type[LayerBase]") -> dict[str, str]:
    helps = {}
    for name, info in cls.model_fields.items():
        if info.description:
            helps[name] = info.description
    if "padding" in helps and cls.model_fields["padding"].annotation is PaddingSpec:    # conv and pool, not zero_pad
        helps["padding"] = "an int, one int per spatial dim, 'same', 'valid', or [[before, after], ...] per spatial dim"
    if "output_size" in helps:
        helps["output_size"] = "an int, or one size (or null) per spatial dim"
    for name in ("kernel_size", "stride", "dilation", "output_padding", "normalized_shape"):
        if name in cls.model_fields:
            helps.setdefault(name, "a positive int or a list of them, one per spatial dim")
    # Errors name the field as the spec wrote it, so a Keras spelling (`strides`, `pool_size`) gets the same help.
    for name, spellings in field_spellings(cls).items():
        for alias in spellings[1:]:
            if name in helps:
                helps[alias] = helps[name]
    return helps


def parse_layer(raw: Any, index: int) -> "LayerBase":
    """Validate one layer description (a mapping, or an already built layer) into its model.

    Errors name the layer (index, name, type), the field, the value and why, with a suggestion for misspelled
    types and fields.
    """
    from pydantic import ValidationError


    if isinstance(raw, LayerBase):
        return raw
    if not isinstance(raw, dict):
        raise SpecError(f"layers[{index}]: expected a mapping with a 'type' field, got {shown(raw)}")
    name = raw.get("name") if isinstance(raw.get("name"), str) else None
    type_ = raw.get("type")
    key = next((k for k in raw if not isinstance(k, str)), None)
    if key is not None:                           # Pydantic would fail with a TypeError ("keywords must be strings")
        raise SpecError(f"{layer_label(index, name, type_ if isinstance(type_, str) else None)}: the key "
                        f"{shown(key)} ({type(key).__name__}) is not a field name: a layer's keys are text "
                        f"(its field names)")
    if type_ is None:
        load_families()                           # the list names every type, not only the families loaded so far
        raise SpecError(f"{layer_label(index, name, None)}: missing field 'type' "
                        f"(one of: {', '.join(sorted(LAYER_TYPES))})")
    if isinstance(type_, str) and not _known_type(type_):
        wanted = type_                            # a type of a family not imported at start: import up to its family
        load_families(until=lambda: _known_type(wanted))
    keras = KERAS_CLASSES.get(type_) if isinstance(type_, str) else None
    if keras is not None:
        # a Keras class name (exact spelling): the type that implements it, with the fields Keras' meaning implies
        try:
            raw = {**keras.from_keras(type_, {k: v for k, v in raw.items() if k != "type"}),
                   "type": _type_names(keras)[0]}
        except ValueError as exc:
            raise SpecError(f"{layer_label(index, name, type_)}: {exc}") from None
        type_ = raw["type"]
    cls = LAYER_TYPES.get(type_.lower()) if isinstance(type_, str) else None
    if cls is None and isinstance(type_, str):
        load_plugins()                            # a type from an installed package, registered on import
        cls = LAYER_TYPES.get(type_.lower())
    if cls is None:
        suggestion = did_you_mean(str(type_), {**LAYER_TYPES, **KERAS_CLASSES})
        raise SpecError(f"{layer_label(index, name, None)}: unknown layer type {shown(type_)}"
                        f"{suggestion or ' (run `layercalc schema` for the list)'}")
    for field, spellings in _aliased_fields(cls):
        given = [n for n in spellings if n in raw]
        if len(given) > 1:
            # Pydantic would take one spelling and call the other an unknown field ("did you mean 'filters'?").
            values = ", ".join(f"{n} {shown(raw[n])}" for n in given)
            raise SpecError(f"{layer_label(index, name, type_)}: {' and '.join(repr(n) for n in given)} are two "
                            f"names of the same field {field!r}, given twice ({values}); keep one")
    try:
        return cls.model_validate({**raw, "type": type_.lower()})
    except ValidationError as exc:
        detail = cls.describe_error(exc, raw)
        raise SpecError(f"{layer_label(index, name, type_)}: {detail}") from None
