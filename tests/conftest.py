import os

import pytest
import torch

from tests.helpers import REPO

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture
def repo():
    return REPO
