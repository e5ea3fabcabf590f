"""One table of merge modes per side, and they agree.

Python: attn2scale.ops.reference.MERGE_MODES (name -> code); C++: MergeMode
and kMergeModeNames in csrc/scale_merge_math.h, exposed as
attn2scale._C.merge_mode_names(). Adding a mode changes the pinned table in
test_the_table_is_pinned, and nothing else here. An unknown mode is refused
with the list of known ones on every path that takes a mode: the API, the
reference, the raw op on CPU and on meta tensors (the fake kernels), the
backward op, the model and the converter's CLI. (The C++ dispatch on an
unknown *code* is exercised in test_cuda_hostsim.py, which holds the only
C ABI that takes a code.)
"""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from attn2scale import ops
from attn2scale.ops import reference as R

needs_ext = pytest.mark.skipif(not ops.extension_available(), reason="attn2scale._C is not built/loadable")

KNOWN = "'avg', 'max' or 'attention'"
BAD = ["median", "Attention", "", "avg ", "sum"]


def test_the_table_is_pinned():
    """The modes and their codes; the codes are an ABI (the C++ kernels and
    the host simulation's C entry points take them)."""
    assert R.MERGE_MODES == {"avg": 0, "max": 1, "attention": 2}
    assert ops.MERGE_MODES is R.MERGE_MODES
    assert R.merge_mode_list() == KNOWN


@needs_ext
def test_cpp_table_agrees_with_python():
    from attn2scale import _C

    names = _C.merge_mode_names()
    assert isinstance(names, tuple) and all(isinstance(n, str) for n in names)
    assert {name: code for code, name in enumerate(names)} == R.MERGE_MODES


@needs_ext
@pytest.mark.parametrize("mode", list(R.MERGE_MODES))
def test_cpp_accepts_every_python_mode(mode):
    """Each Python name parses in C++ and selects that mode's merge: the
    result matches the reference of the same name, and differs from the
    other modes' (so a name mapped to the wrong code cannot pass)."""
    g = torch.Generator().manual_seed(5)
    scores = [torch.randn(1, 2, 5, 5, generator=g), torch.randn(1, 2, 3, 3, generator=g)]
    logits = torch.randn(1, 2, 5, 5, generator=g)
    outs = {m: R.scale_merge(scores, (5, 5), m, logits if m == "attention" else None)[0] for m in R.MERGE_MODES}
    out, _ = torch.ops.attn2scale.scale_merge(scores, [5, 5], mode, logits if mode == "attention" else None, None, None)
    torch.testing.assert_close(out, outs[mode], rtol=1e-6, atol=1e-6)
    for other, ref in outs.items():
        if other != mode:
            assert not torch.allclose(out, ref, rtol=1e-3, atol=1e-3), (mode, other)


def _scores(device="cpu"):
    return [torch.zeros(2, 3, 5, 5, device=device), torch.zeros(2, 3, 4, 4, device=device)]


def _msg(op, mode):
    return re.escape(f"{op}: mode must be {KNOWN}, got {mode!r}")


@pytest.mark.parametrize("mode", BAD)
def test_reference_refuses_unknown_mode(mode):
    with pytest.raises(ValueError, match=_msg("scale_merge", mode)):
        R.scale_merge(_scores(), (5, 5), mode)


@pytest.mark.parametrize("mode", [None, 2, b"avg"])
def test_reference_refuses_non_string_mode(mode):
    """A code or bytes is not a mode name (only the kernels speak codes)."""
    with pytest.raises(ValueError, match=re.escape(f"mode must be {KNOWN}, got {mode!r}")):
        R.scale_merge(_scores(), (5, 5), mode)


@needs_ext
@pytest.mark.parametrize("device", ["cpu", "meta"])
@pytest.mark.parametrize("mode", BAD)
def test_op_refuses_unknown_mode(mode, device):
    """The C++ parse (cpu) and the fake kernel (meta) refuse with the same words."""
    with pytest.raises(RuntimeError, match=_msg("scale_merge", mode)):
        torch.ops.attn2scale.scale_merge(_scores(device), [5, 5], mode, None, None, None)


@needs_ext
@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_backward_op_refuses_unknown_mode(device):
    grad = torch.zeros(2, 3, 5, 5, device=device)
    aux = torch.zeros(0, device=device)
    with pytest.raises(RuntimeError, match=_msg("scale_merge_backward", "median")):
        torch.ops.attn2scale.scale_merge_backward(grad, _scores(device), "median", aux, None, None)


@needs_ext
def test_api_refuses_unknown_mode():
    with pytest.raises(RuntimeError, match=_msg("scale_merge", "median")):
        ops.scale_merge(_scores(), (5, 5), "median")


@needs_ext
def test_compiled_graph_refuses_unknown_mode():
    """torch.compile traces through the fake kernel, which refuses the mode
    before any kernel could run."""
    fn = torch.compile(lambda a, b: ops.scale_merge([a, b], (5, 5), "median"), backend="eager", fullgraph=True)
    with pytest.raises(Exception, match=_msg("scale_merge", "median")):
        fn(*_scores())


def test_model_refuses_unknown_merge():
    from attn2scale.models.multiscale import MultiScaleNet

    with pytest.raises(ValueError, match=re.escape(f"MultiScaleNet: merge must be {KNOWN}, got 'median'")):
        MultiScaleNet(nn.Identity(), merge="median")


def test_cli_choices_come_from_the_table(capsys):
    from attn2scale.cli.convert import build_parser

    parser = build_parser()
    (action,) = [a for a in parser._actions if "--merge" in a.option_strings]
    assert list(action.choices) == list(R.MERGE_MODES)
    assert parser.parse_args(["m.caffemodel", "--merge", "max"]).merge == "max"
    with pytest.raises(SystemExit):
        parser.parse_args(["m.caffemodel", "--merge", "median"])
    assert "invalid choice: 'median'" in capsys.readouterr().err


def test_paper_rows_name_known_modes():
    """The paper's tables label rows by merge; every labelled merge is a mode."""
    from attn2scale.tables.paper import MERGE_ROWS

    assert set(MERGE_ROWS) <= set(R.MERGE_MODES)
