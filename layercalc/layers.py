"""Layer descriptions: one Pydantic model per layer type, discriminated by ``type``.

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

import numbers
from functools import lru_cache
from typing import Annotated, Any, ClassVar, Literal, Optional, Union

from pydantic import (AliasChoices, BaseModel, BeforeValidator, ConfigDict, Field, field_serializer, field_validator,
                      model_validator)
from pydantic_core import PydanticCustomError

from .errors import (InvalidDescription, SpecError, boolean_problem, describe_validation_error, layer_label, own_error,
                     real_number_problem, safe_text, shown, whole_number_problem)

#: the most dimensions a tensor may have: NumPy's limit (PyTorch's is lower), so every shape can also be executed
MAX_RANK = 64


def _whole_number(value: Any) -> Any:
    """Before-validator of every integer field: refuse what lax mode would coerce; ``3.0`` → ``3``."""
    problem = whole_number_problem(value)
    if problem is not None:
        raise PydanticCustomError("whole_number", problem)
    # an integral float (3.0, NumPy's float32(3)) is the int it equals; integers go on unchanged
    return int(value) if isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral) else value


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
    def describe_error(cls, exc, data: Any) -> str:
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

    def replace(self, **changes: Any):
        """A validated copy with some fields changed (``net.replace(batch=8)``, ``conv.replace(stride=2)``)."""
        fields = {name: getattr(self, name) for name in type(self).model_fields}
        return type(self)(**{**fields, **changes})


class LayerBase(Description):
    """Fields every layer has: an optional ``name`` and the names of its ``inputs``."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, defer_build=True)

    #: how many inputs the layer takes (``None``: any number ≥ min_inputs)
    min_inputs: ClassVar[int] = 1
    max_inputs: ClassVar[Optional[int]] = 1
    #: spatial rank the layer needs (``None``: any, or none)
    spatial_dims: ClassVar[Optional[int]] = None

    name: Optional[str] = Field(None, min_length=1, description="unique name; default '<type>_<index>'")
    inputs: Optional[list[str]] = Field(
        None, description="names of the layers feeding this one ('input' is the network input); default: previous layer")

    @field_validator("inputs", mode="before")
    @classmethod
    def _one_input_as_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("name")
    @classmethod
    def _printable_name(cls, value: Optional[str]) -> Optional[str]:
        # Names are printed in tables and messages: a control character could rewrite the terminal, a huge name
        # would make every line about the layer huge.
        if value is not None:
            check_name(value)
        return value

    @field_validator("inputs")
    @classmethod
    def _printable_inputs(cls, value: Optional[list[str]]) -> Optional[list[str]]:
        for name in value or ():
            check_name(name)
        return value

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


# --------------------------------------------------------------------------------------------------- convolutions

class _ConvBase(LayerBase):
    transposed: ClassVar[bool] = False

    in_channels: Optional[PositiveInt] = Field(None, description="inferred from the input; an error if different")
    out_channels: PositiveInt = Field(validation_alias=_alias("out_channels", "filters"))
    kernel_size: IntOrList
    stride: IntOrList = Field(1, validation_alias=_alias("stride", "strides"))
    padding: PaddingSpec = Field(
        0, description="int, one int per spatial dim, 'same', 'valid', or [[before, after], ...] per spatial dim")
    dilation: IntOrList = Field(1, validation_alias=_alias("dilation", "dilation_rate"))
    groups: PositiveInt = 1
    bias: Bool = Field(True, validation_alias=_alias("bias", "use_bias"))
    padding_mode: Literal["zeros", "reflect", "replicate", "circular"] = "zeros"

    _lower_padding = field_validator("padding", mode="before")(classmethod(lambda cls, v: _lower_string(v)))

    @model_validator(mode="after")
    def _normalize(self):
        rank = self.spatial_dims
        for field in ("kernel_size", "stride", "dilation"):
            object.__setattr__(self, field, _per_dim(getattr(self, field), rank, field))
        object.__setattr__(self, "padding", _padding_pairs(self.padding, rank))
        if self.out_channels % self.groups:
            raise ValueError(f"out_channels {self.out_channels} is not divisible by groups {self.groups}")
        return self


class Conv1d(_ConvBase):
    spatial_dims: ClassVar[int] = 1
    type: Literal["conv1d"] = "conv1d"


class Conv2d(_ConvBase):
    spatial_dims: ClassVar[int] = 2
    type: Literal["conv2d"] = "conv2d"


class Conv3d(_ConvBase):
    spatial_dims: ClassVar[int] = 3
    type: Literal["conv3d"] = "conv3d"


class _ConvTransposeBase(_ConvBase):
    transposed: ClassVar[bool] = True

    output_padding: Union[NonNegativeInt, list[NonNegativeInt]] = Field(
        0, description="extra size added to one side of the output; smaller than stride or dilation")
    padding_mode: Literal["zeros"] = "zeros"

    @model_validator(mode="after")
    def _normalize_output_padding(self):
        object.__setattr__(self, "output_padding", _per_dim(self.output_padding, self.spatial_dims, "output_padding"))
        for op, s, d in zip(self.output_padding, self.stride, self.dilation):
            if op >= s and op >= d:
                raise ValueError(f"output_padding {list(self.output_padding)} must be smaller than either stride "
                                 f"{list(self.stride)} or dilation {list(self.dilation)} (PyTorch's rule)")
        return self


class ConvTranspose1d(_ConvTransposeBase):
    spatial_dims: ClassVar[int] = 1
    type: Literal["conv_transpose1d"] = "conv_transpose1d"


class ConvTranspose2d(_ConvTransposeBase):
    spatial_dims: ClassVar[int] = 2
    type: Literal["conv_transpose2d"] = "conv_transpose2d"


class ConvTranspose3d(_ConvTransposeBase):
    spatial_dims: ClassVar[int] = 3
    type: Literal["conv_transpose3d"] = "conv_transpose3d"


# -------------------------------------------------------------------------------------------------------- pooling

class _PoolBase(LayerBase):
    kernel_size: IntOrList = Field(validation_alias=_alias("kernel_size", "pool_size"))
    stride: Optional[IntOrList] = Field(None, validation_alias=_alias("stride", "strides"),
                                        description="a positive int or one per spatial dim; default: the kernel size")
    padding: PaddingSpec = Field(0, description="int (at most half the kernel), per-dim list, 'same' or 'valid'")
    ceil_mode: Bool = False

    _lower_padding = field_validator("padding", mode="before")(classmethod(lambda cls, v: _lower_string(v)))

    @model_validator(mode="after")
    def _normalize(self):
        rank = self.spatial_dims
        object.__setattr__(self, "kernel_size", _per_dim(self.kernel_size, rank, "kernel_size"))
        stride = self.kernel_size if self.stride is None else _per_dim(self.stride, rank, "stride")
        object.__setattr__(self, "stride", stride)
        if hasattr(self, "dilation"):
            object.__setattr__(self, "dilation", _per_dim(self.dilation, rank, "dilation"))
        object.__setattr__(self, "padding", _padding_pairs(self.padding, rank))
        return self

    @property
    def dilations(self) -> tuple[int, ...]:
        return getattr(self, "dilation", (1,) * self.spatial_dims)


class _MaxPoolBase(_PoolBase):
    dilation: IntOrList = Field(1, validation_alias=_alias("dilation", "dilation_rate"))


class MaxPool1d(_MaxPoolBase):
    spatial_dims: ClassVar[int] = 1
    type: Literal["maxpool1d"] = "maxpool1d"


class MaxPool2d(_MaxPoolBase):
    spatial_dims: ClassVar[int] = 2
    type: Literal["maxpool2d"] = "maxpool2d"


class MaxPool3d(_MaxPoolBase):
    spatial_dims: ClassVar[int] = 3
    type: Literal["maxpool3d"] = "maxpool3d"


class _AvgPoolBase(_PoolBase):
    count_include_pad: Optional[Bool] = Field(
        None, description="count padded zeros in the divisor; default True for numeric padding (PyTorch), "
                          "False for 'same' (Keras)")
    divisor_override: Optional[PositiveInt] = None


class AvgPool1d(_AvgPoolBase):
    spatial_dims: ClassVar[int] = 1
    type: Literal["avgpool1d"] = "avgpool1d"


class AvgPool2d(_AvgPoolBase):
    spatial_dims: ClassVar[int] = 2
    type: Literal["avgpool2d"] = "avgpool2d"


class AvgPool3d(_AvgPoolBase):
    spatial_dims: ClassVar[int] = 3
    type: Literal["avgpool3d"] = "avgpool3d"


OutputSize = Union[PositiveInt, list[Optional[PositiveInt]]]


class _AdaptivePoolBase(LayerBase):
    output_size: OutputSize = Field(description="int, or one size per spatial dim (null keeps the input size)")

    @model_validator(mode="after")
    def _normalize(self):
        value = self.output_size
        sizes = (value,) * self.spatial_dims if isinstance(value, int) else tuple(value)
        if len(sizes) == 1:
            sizes = sizes * self.spatial_dims
        if len(sizes) != self.spatial_dims:
            raise ValueError(f"output_size needs 1 or {self.spatial_dims} values, got {shown(list(sizes))}")
        object.__setattr__(self, "output_size", sizes)
        return self


class AdaptiveAvgPool1d(_AdaptivePoolBase):
    spatial_dims: ClassVar[int] = 1
    type: Literal["adaptive_avgpool1d"] = "adaptive_avgpool1d"


class AdaptiveAvgPool2d(_AdaptivePoolBase):
    spatial_dims: ClassVar[int] = 2
    type: Literal["adaptive_avgpool2d"] = "adaptive_avgpool2d"


class AdaptiveAvgPool3d(_AdaptivePoolBase):
    spatial_dims: ClassVar[int] = 3
    type: Literal["adaptive_avgpool3d"] = "adaptive_avgpool3d"


class AdaptiveMaxPool1d(_AdaptivePoolBase):
    spatial_dims: ClassVar[int] = 1
    type: Literal["adaptive_maxpool1d"] = "adaptive_maxpool1d"


class AdaptiveMaxPool2d(_AdaptivePoolBase):
    spatial_dims: ClassVar[int] = 2
    type: Literal["adaptive_maxpool2d"] = "adaptive_maxpool2d"


class AdaptiveMaxPool3d(_AdaptivePoolBase):
    spatial_dims: ClassVar[int] = 3
    type: Literal["adaptive_maxpool3d"] = "adaptive_maxpool3d"


class GlobalAvgPool(LayerBase):
    """Average over every spatial dimension (Keras ``GlobalAveragePooling*D``)."""
    type: Literal["global_avgpool"] = "global_avgpool"
    keepdims: Bool = Field(False, description="keep the spatial dims as size 1 (like AdaptiveAvgPool(1))")


class GlobalMaxPool(LayerBase):
    """Maximum over every spatial dimension (Keras ``GlobalMaxPooling*D``)."""
    type: Literal["global_maxpool"] = "global_maxpool"
    keepdims: Bool = False


# ------------------------------------------------------------------------------------------------ dense, reshaping

class Linear(LayerBase):
    """Applies to the last dimension, like ``torch.nn.Linear`` (works on [N, L, F] too)."""
    type: Literal["linear", "dense"] = "linear"
    in_features: Optional[PositiveInt] = Field(None, description="inferred from the input; an error if different")
    out_features: PositiveInt = Field(validation_alias=_alias("out_features", "units"))
    bias: Bool = Field(True, validation_alias=_alias("bias", "use_bias"))


class Flatten(LayerBase):
    type: Literal["flatten"] = "flatten"
    start_dim: Int = 1
    end_dim: Int = -1


class Reshape(LayerBase):
    """Reshape each example; ``shape`` excludes the batch dimension (like Keras), one entry may be -1."""
    type: Literal["reshape"] = "reshape"
    shape: list[Int] = Field(validation_alias=_alias("shape", "target_shape"), min_length=1, max_length=MAX_RANK - 1)

    @field_validator("shape")
    @classmethod
    def _check_shape(cls, value: list[int]) -> list[int]:
        if sum(1 for v in value if v == -1) > 1 or any(v == 0 or v < -1 for v in value):
            raise ValueError(f"shape {value} must hold positive sizes and at most one -1")
        return value


ZERO_PAD_FORMS = "a non-negative int, one per spatial dim, or [[before, after], ...] per spatial dim"


class ZeroPad(LayerBase):
    """Zero padding of the spatial dims: int, one int per spatial dim, or [[before, after], ...] in dim order."""
    type: Literal["zero_pad"] = "zero_pad"
    padding: Union[NonNegativeInt, list[NonNegativeInt],
                   list[Annotated[list[NonNegativeInt], Field(min_length=2, max_length=2)]]] = Field(
        description=ZERO_PAD_FORMS)

    @field_validator("padding", mode="before")
    @classmethod
    def _no_padding_mode(cls, value: Any) -> Any:
        # 'same'/'valid' describe a conv's or pool's padding; a zero_pad layer is only ever told the amounts.
        if isinstance(value, str):
            raise ValueError(f"zero_pad takes explicit amounts, not a mode like {value!r} ('same' and 'valid' are "
                             f"for conv and pooling layers): expected {ZERO_PAD_FORMS}")
        return value


# -------------------------------------------------------------------------------------------------- normalization

class _BatchNormBase(LayerBase):
    num_features: Optional[PositiveInt] = Field(None, description="inferred from the input; an error if different")
    eps: PositiveFloat = 1e-5
    momentum: Optional[Float] = 0.1
    affine: Bool = True
    track_running_stats: Bool = True


class BatchNorm1d(_BatchNormBase):
    type: Literal["batchnorm1d"] = "batchnorm1d"


class BatchNorm2d(_BatchNormBase):
    spatial_dims: ClassVar[int] = 2
    type: Literal["batchnorm2d"] = "batchnorm2d"


class BatchNorm3d(_BatchNormBase):
    spatial_dims: ClassVar[int] = 3
    type: Literal["batchnorm3d"] = "batchnorm3d"


class LayerNorm(LayerBase):
    type: Literal["layernorm"] = "layernorm"
    normalized_shape: Optional[Union[PositiveInt, list[PositiveInt]]] = Field(
        None, description="trailing dims to normalize over; default: the last dim")
    eps: PositiveFloat = 1e-5
    elementwise_affine: Bool = True
    bias: Bool = True


class GroupNorm(LayerBase):
    type: Literal["groupnorm"] = "groupnorm"
    num_groups: PositiveInt
    num_channels: Optional[PositiveInt] = Field(None, description="inferred from the input; an error if different")
    eps: PositiveFloat = 1e-5
    affine: Bool = True


class Dropout(LayerBase):
    """Identity at inference; counted as zero FLOPs."""
    type: Literal["dropout"] = "dropout"
    p: Probability = Field(0.5, validation_alias=_alias("p", "rate"))
    inplace: Bool = False


# ---------------------------------------------------------------------------------------------------- activations

class _Activation(LayerBase):
    inplace: Bool = Field(False, description="accepted for PyTorch familiarity; no effect on any figure")


class ReLU(_Activation):
    type: Literal["relu"] = "relu"


class ReLU6(_Activation):
    type: Literal["relu6"] = "relu6"


class LeakyReLU(_Activation):
    type: Literal["leaky_relu"] = "leaky_relu"
    negative_slope: Float = Field(0.01, validation_alias=_alias("negative_slope", "alpha"))


class Sigmoid(_Activation):
    type: Literal["sigmoid"] = "sigmoid"


class Tanh(_Activation):
    type: Literal["tanh"] = "tanh"


class GELU(_Activation):
    type: Literal["gelu"] = "gelu"
    approximate: Literal["none", "tanh"] = "none"


class SiLU(_Activation):
    type: Literal["silu", "swish"] = "silu"


class Hardswish(_Activation):
    type: Literal["hardswish"] = "hardswish"


class Hardsigmoid(_Activation):
    type: Literal["hardsigmoid"] = "hardsigmoid"


class Softmax(_Activation):
    type: Literal["softmax"] = "softmax"
    dim: Int = Field(-1, validation_alias=_alias("dim", "axis"))


class Identity(LayerBase):
    type: Literal["identity"] = "identity"


# --------------------------------------------------------------------------------------------------------- merges

class Add(LayerBase):
    """Element-wise sum of two or more inputs, with NumPy/PyTorch broadcasting."""
    min_inputs: ClassVar[int] = 2
    max_inputs: ClassVar[Optional[int]] = None
    type: Literal["add"] = "add"


class Mul(LayerBase):
    """Element-wise product with broadcasting (e.g. a squeeze-and-excitation gate [N, C, 1, 1] × [N, C, H, W])."""
    min_inputs: ClassVar[int] = 2
    max_inputs: ClassVar[Optional[int]] = None
    type: Literal["mul"] = "mul"


class Concat(LayerBase):
    """Concatenation along ``dim`` (default: the channel dim of the network's layout)."""
    min_inputs: ClassVar[int] = 2
    max_inputs: ClassVar[Optional[int]] = None
    type: Literal["concat"] = "concat"
    dim: Optional[Int] = Field(None, validation_alias=_alias("dim", "axis"),
                               description="dim to join along (negative counts from the end); default: the channel "
                                           "dim (1 for NCHW, the last for NHWC)")


# ------------------------------------------------------------------------------------------------------ registry

LAYER_CLASSES: tuple[type[LayerBase], ...] = (
    Conv1d, Conv2d, Conv3d, ConvTranspose1d, ConvTranspose2d, ConvTranspose3d,
    MaxPool1d, MaxPool2d, MaxPool3d, AvgPool1d, AvgPool2d, AvgPool3d,
    AdaptiveAvgPool1d, AdaptiveAvgPool2d, AdaptiveAvgPool3d, AdaptiveMaxPool1d, AdaptiveMaxPool2d, AdaptiveMaxPool3d,
    GlobalAvgPool, GlobalMaxPool,
    Linear, Flatten, Reshape, ZeroPad,
    BatchNorm1d, BatchNorm2d, BatchNorm3d, LayerNorm, GroupNorm, Dropout,
    ReLU, ReLU6, LeakyReLU, Sigmoid, Tanh, GELU, SiLU, Hardswish, Hardsigmoid, Softmax, Identity,
    Add, Mul, Concat,
)


def _type_names(cls: type[LayerBase]) -> tuple[str, ...]:
    return cls.model_fields["type"].annotation.__args__  # the Literal's values


#: every accepted ``type`` string (aliases such as ``dense`` included) → its model class
LAYER_TYPES: dict[str, type[LayerBase]] = {name: cls for cls in LAYER_CLASSES for name in _type_names(cls)}

Layer = Annotated[Union[LAYER_CLASSES], Field(discriminator="type")]  # type: ignore[valid-type]


def field_spellings(cls: type[LayerBase]) -> dict[str, list[str]]:
    """Each field of ``cls`` → every name a spec may use for it: its own first, then its Keras aliases."""
    spellings = {}
    for name, info in cls.model_fields.items():
        alias = info.validation_alias
        choices = [c for c in alias.choices if isinstance(c, str)] if isinstance(alias, AliasChoices) else []
        spellings[name] = [name] + [c for c in choices if c != name]
    return spellings


@lru_cache(maxsize=None)
def _aliased_fields(cls: type[LayerBase]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """The fields of ``cls`` that have Keras aliases, with all their spellings (cached: checked for every layer)."""
    return tuple((name, tuple(names)) for name, names in field_spellings(cls).items() if len(names) > 1)


def accepted_fields(cls: type[LayerBase]) -> list[str]:
    """Every field name a spec may use for ``cls``, Keras aliases included."""
    return sorted({n for names in field_spellings(cls).values() for n in names})


def _field_help(cls: type[LayerBase]) -> dict[str, str]:
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


def parse_layer(raw: Any, index: int) -> LayerBase:
    """Validate one layer description (a mapping, or an already built layer) into its model.

    Errors name the layer (index, name, type), the field, the value and why, with a suggestion for misspelled
    types and fields.
    """
    from pydantic import ValidationError

    from .errors import did_you_mean, shown

    if isinstance(raw, LayerBase):
        return raw
    if not isinstance(raw, dict):
        raise SpecError(f"layers[{index}]: expected a mapping with a 'type' field, got {shown(raw)}")
    name = raw.get("name") if isinstance(raw.get("name"), str) else None
    type_ = raw.get("type")
    if type_ is None:
        raise SpecError(f"{layer_label(index, name, None)}: missing field 'type' "
                        f"(one of: {', '.join(sorted(LAYER_TYPES))})")
    cls = LAYER_TYPES.get(str(type_).lower()) if isinstance(type_, str) else None
    if cls is None:
        raise SpecError(f"{layer_label(index, name, None)}: unknown layer type {shown(type_)}"
                        f"{did_you_mean(str(type_), LAYER_TYPES) or ' (run `layercalc schema` for the list)'}")
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
