"""``layercalc size`` and ``layercalc solve``: parse the options, ask :func:`layercalc.size` /
:func:`layercalc.solve`, print the lines they carry, fitted to the terminal's width. No arithmetic lives here."""

from typing import Annotated, Optional

import typer


def size_command(
    length: Annotated[int, typer.Argument(min=1, help="input length along one dimension", metavar="N")],
    kernel_size: Annotated[int, typer.Option("--kernel-size", "-k", min=1, help="kernel size")],
    stride: Annotated[int, typer.Option("--stride", "-s", min=1, help="stride")] = 1,
    padding: Annotated[str, typer.Option("--padding", "-p", help="padding on each side: N, same or valid")] = "0",
    dilation: Annotated[int, typer.Option("--dilation", "-d", min=1, help="dilation")] = 1,
    transposed: Annotated[bool, typer.Option("--transposed", "-t", help="transposed convolution")] = False,
    output_padding: Annotated[Optional[int], typer.Option(
        "--output-padding", min=0, help="transposed only: extra size on one side; default 0 (with -p valid: "
        "Keras' extra s − span when the kernel span is narrower than the stride)")] = None,
    ceil: Annotated[bool, typer.Option("--ceil", help="pooling with ceil_mode (PyTorch's rule)")] = False,
    explain: Annotated[bool, typer.Option("--explain", "-e", help="show the worked formula")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="print only the number")] = False,
) -> None:
    """Output length along one dimension: floor((N + 2·p − d·(k − 1) − 1) / s) + 1 (or the transposed rule).

    Example: `layercalc size 224 -k 7 -s 2 -p 3` → 112. When the stride does not divide evenly (or skips
    positions between windows), the line also says which input positions no window ever reads.
    """
    from ..sizing import size
    from ..terminal import terminal_width, wrap

    result = size(length, kernel_size, stride, padding, dilation, transposed=transposed, ceil_mode=ceil,
                  output_padding=output_padding)
    if quiet:
        print(result.output)
    else:
        width = terminal_width()
        print("\n".join(wrap(line.lstrip(" "), width, line[:len(line) - len(line.lstrip(" "))])
                        for line in (result.lines if explain else [result.text])))


def solve_command(
    input_length: Annotated[int, typer.Option("--input", "-i", min=1, help="input length")],
    output_length: Annotated[int, typer.Option("--output", "-o", min=1, help="wanted output length")],
    kernel_size: Annotated[Optional[int], typer.Option("--kernel-size", "-k", min=1, help="fix the kernel")] = None,
    stride: Annotated[Optional[int], typer.Option("--stride", "-s", min=1, help="fix the stride")] = None,
    padding: Annotated[Optional[int], typer.Option("--padding", "-p", min=0, help="fix the padding")] = None,
    dilation: Annotated[Optional[int], typer.Option("--dilation", "-d", min=1, help="fix the dilation")] = None,
    transposed: Annotated[bool, typer.Option("--transposed", "-t", help="transposed convolution")] = False,
    output_padding: Annotated[Optional[int], typer.Option("--output-padding", min=0,
                                                          help="transposed: fix output_padding")] = None,
    ceil: Annotated[bool, typer.Option("--ceil", help="pooling with ceil_mode")] = False,
    max_kernel: Annotated[int, typer.Option("--max-kernel", min=1, help="largest kernel searched")] = 11,
    max_stride: Annotated[int, typer.Option("--max-stride", min=1, help="largest stride searched")] = 8,
    max_dilation: Annotated[int, typer.Option("--max-dilation", min=1, help="largest dilation searched")] = 4,
    max_padding: Annotated[Optional[int], typer.Option(
        "--max-padding", min=0, help="largest padding searched (default: the kernel span dilation·(kernel − 1); "
                                     "kernel // 2 with --ceil, PyTorch's limit for pooling)")] = None,
    limit: Annotated[int, typer.Option("--limit", min=0, help="show at most this many (0: all)")] = 20,
) -> None:
    """Every kernel / stride / padding / dilation (the ones not fixed) giving exactly OUTPUT from INPUT.

    Example: `layercalc solve --input 224 --output 112 -k 7` → stride 2, padding 3. Sorted with dilation 1 first,
    then by kernel, stride, padding. Exit status 0 also when nothing fits (the message says so and shows the
    nearest reachable outputs); 2 for invalid values.

    Bounds of the search (what real networks use; widen them with the --max-* options): kernel 1..11, stride 1..8,
    dilation 1..4, padding 0..dilation·(kernel − 1) (more only adds windows of zeros; with --ceil 0..kernel // 2),
    output_padding 0..max(stride, dilation) − 1 (--transposed, PyTorch's rule). When the wanted output is 1, only
    the smallest stride giving it is listed (every larger one does too). Each answer is checked by the forward
    formula, shown in the last column. A search of more than 1,500,000 combinations (a few seconds) is refused,
    naming the bound to lower.
    """
    from ..solving import solve as answer
    from ..terminal import terminal_width

    result = answer(input_length, output_length, kernel_size, stride, padding, dilation, transposed,
                    output_padding=output_padding, ceil_mode=ceil, max_kernel=max_kernel, max_stride=max_stride,
                    max_dilation=max_dilation, max_padding=max_padding, limit=limit)
    print(result.render(terminal_width()))
