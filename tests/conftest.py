import os

import pytest
import torch

from datasets import game_synth
from tests.helpers import REPO

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture
def repo():
    return REPO


@pytest.fixture(scope="module")
def one_thread():
    """The tiny training runs are faster on one thread, and much faster when other jobs share
    the CPU; a module opts in with `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def v2_data(tmp_path_factory):
    """V2 (apex-count, 22 classes) generated at scale 0.1: 100/10/10 images per class."""
    root = tmp_path_factory.mktemp("data")
    game_synth.generate("apex-count", root, scale=0.1, seed=0)
    return root
