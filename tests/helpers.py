"""What the tests share: the repository root and running its command lines."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
CUDA_REASON = "needs a CUDA GPU (make gpu-check runs these tests on one)"
# The environment of a command line that must run as on a machine without a GPU (the CPU's
# defaults and backends), also on one that has a GPU: CUDA hides every device.
CPU_ONLY = {"CUDA_VISIBLE_DEVICES": ""}


def needs_cuda(test):
    """A CUDA-only test: skipped without a GPU, selected by `pytest -m cuda` (make gpu-check)."""
    return pytest.mark.cuda(pytest.mark.skipif(not torch.cuda.is_available(), reason=CUDA_REASON)(test))


def run_cli(*args, cwd=REPO, timeout=600, env=None):
    """Run a repository script with this interpreter; returns the CompletedProcess."""
    return subprocess.run([sys.executable, *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})


def assert_clean_error(proc, *fragments):
    """A user mistake: non-zero exit, one `error:` line naming the problem, no traceback."""
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.strip().splitlines() if line]
    assert len(lines) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def counted_flops(name, fold=1, align=1):
    """FLOPs of one (folded) input of the registry's model, counted by PyTorch's own
    FlopCounterMode (2 x MACs of convs and matmuls): independent of models/flops.py's thop."""
    import models

    return _counted(models.build_model(name, fold, align=align), models.input_shape(name, fold))


def counted_variant_flops(name, variant, fold):
    """counted_flops of one input of models.build_variant(name, variant, fold)."""
    import models

    return _counted(models.build_variant(name, variant, fold), models.variant_input_shape(name, variant, fold))


def _counted(model, shape):
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.eval()(torch.zeros(1, *shape))
    return counter.get_total_flops()


def one_line_error(main, argv, capsys):
    """Run a command line's main() in this process; its last stderr line (exit 2, no traceback)."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "Traceback" not in err, err
    return err.strip().splitlines()[-1]
