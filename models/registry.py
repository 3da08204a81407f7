"""The one place that maps dataset/model names to configs and builders.

Every `config/<name>.json` (except `model_map.json`) describes one dataset and its model;
its `family` picks the builder below. A name is the config's `name` or its `id`
(e.g. "lol-gold1" or "V1"); ids match case-insensitively.
"""
import functools
import json
import math
from pathlib import Path

from util.errors import UserError

from .common import init_weights
from .folding import check_fold
from .game_cnn import build_compound_scaled_cnn, build_game_cnn, compound_scaled_input_size
from .noscope_cnn import build_noscope_cnn
from .resnet import build_resnet18

CONFIG_DIR = Path(__file__).resolve().parent.parent / "config"
NON_MODEL_CONFIGS = {"model_map.json"}
FAMILY_ORDER = ("game", "noscope", "cifar")
BUILDERS = {"game": build_game_cnn, "noscope": build_noscope_cnn, "cifar": build_resnet18}

# Required fields: dotted path -> accepted type(s). `None` in a tuple allows null.
_NUM = (int, float)
_COMMON = {
    "name": str, "id": str, "family": str, "description": str,
    "input": dict, "input.channels": int, "input.height": int, "input.width": int,
    "classes": list, "arch": dict, "data": dict, "data.kind": str,
    "train": dict, "train.epochs": int, "train.batch_size": int, "train.optimizer": str,
    "train.lr": _NUM, "train.weight_decay": _NUM, "train.lr_schedule": (dict, type(None)),
    "train.augment": str, "train.curriculum": (dict, type(None)), "train.distill_folded": bool,
}
_BY_FAMILY = {
    "game": {"arch.conv_width": int, "arch.units": int, "arch.last_conv_width": int,
             "data.source": str, "data.per_class": dict, "data.per_class.train": int,
             "data.per_class.val": int, "data.per_class.test": int,
             "train.curriculum.epochs_per_step": int, "train.curriculum.per_fold": dict},
    "noscope": {"arch.filters": int, "arch.four_convs": bool, "arch.dense": int,
                "data.object": str, "data.chunks": int, "data.split": dict,
                "data.split.train": int, "data.split.val": int, "data.split.test": int},
    "cifar": {"arch.widths": list, "arch.blocks": list, "data.source": str,
              "data.val_images": int, "data.mean": list, "data.std": list},
}


def _lookup(cfg, dotted):
    node = cfg
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            return _MISSING
        node = node[key]
    return node


_MISSING = object()

# Numbers that must be in range: (dotted path, smallest value). A type check alone lets a
# height of -5 or a conv_width of 0 through to a crash deep inside PyTorch.
_AT_LEAST = {
    "input.channels": 1, "input.height": 1, "input.width": 1, "train.epochs": 1, "train.batch_size": 1,
    "train.weight_decay": 0, "train.curriculum.epochs_per_step": 1,
    "arch.conv_width": 1, "arch.units": 1, "arch.last_conv_width": 1, "data.per_class.train": 1,
    "data.per_class.val": 1, "data.per_class.test": 1,
    "arch.filters": 1, "arch.dense": 1, "data.chunks": 1, "data.split.train": 1, "data.split.val": 1,
    "data.split.test": 1, "data.val_images": 1,
}


def _check_ranges(cfg, path):
    for field, least in _AT_LEAST.items():
        value = _lookup(cfg, field)
        if value is not _MISSING and not (math.isfinite(value) and value >= least):
            raise UserError(f"{path}: field '{field}' must be at least {least}, got {value!r}")
    lr = cfg["train"]["lr"]
    if not (math.isfinite(lr) and lr > 0):
        raise UserError(f"{path}: field 'train.lr' must be a positive number, got {lr!r}")
    if cfg["family"] == "noscope":
        for split, chunk in cfg["data"]["split"].items():
            if chunk > cfg["data"]["chunks"]:
                raise UserError(f"{path}: field 'data.split.{split}' is chunk {chunk}, "
                                f"but 'data.chunks' is {cfg['data']['chunks']}")
    if cfg["family"] == "cifar":
        for field in ("arch.widths", "arch.blocks"):
            values = _lookup(cfg, field)
            if not values or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values):
                raise UserError(f"{path}: field '{field}' must be a non-empty list of whole numbers >= 1")


def validate_config(cfg, path):
    """Raise a one-line UserError naming the file and field of the first problem."""
    if not isinstance(cfg, dict):
        raise UserError(f"{path}: a config must be a JSON object")
    family = cfg.get("family")
    if family not in BUILDERS:
        raise UserError(f"{path}: field 'family' must be one of {sorted(BUILDERS)}, got {family!r}")
    for field, types in {**_COMMON, **_BY_FAMILY[family]}.items():
        value = _lookup(cfg, field)
        if value is _MISSING:
            if field.startswith("train.curriculum.") and cfg["train"].get("curriculum") is None:
                continue
            raise UserError(f"{path}: missing field '{field}'")
        ok = isinstance(value, types) and not (isinstance(value, bool) and types in (int, _NUM))
        if not ok:
            names = "/".join(t.__name__ for t in (types if isinstance(types, tuple) else (types,)))
            raise UserError(f"{path}: field '{field}' must be {names}, got {type(value).__name__} {value!r}")
    if not cfg["classes"] or not all(isinstance(c, str) for c in cfg["classes"]):
        raise UserError(f"{path}: field 'classes' must be a non-empty list of strings")
    if cfg["classes"] != sorted(cfg["classes"]) and family != "cifar":
        raise UserError(f"{path}: field 'classes' must be in sorted (image-folder) order")
    _check_ranges(cfg, path)
    if Path(path).stem != cfg["name"]:
        raise UserError(f"{path}: field 'name' is {cfg['name']!r} but the file is named {Path(path).name}")
    return cfg


def read_configs(config_dir=CONFIG_DIR):
    """Parse and validate every model config in `config_dir`: {name: config}."""
    configs = {}
    for path in sorted(Path(config_dir).glob("*.json")):
        if path.name in NON_MODEL_CONFIGS:
            continue
        try:
            cfg = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise UserError(f"{path}: not valid JSON ({err})") from None
        validate_config(cfg, path)
        configs[cfg["name"]] = cfg
    return configs


@functools.lru_cache(maxsize=None)
def _all_configs():
    return read_configs()


def model_names():
    """Every dataset/model name the configs define, game first, then NoScope, then CIFAR."""
    configs = _all_configs()
    return sorted(configs, key=lambda n: (FAMILY_ORDER.index(configs[n]["family"]), configs[n]["id"]))


def name_rank(name):
    """Sort key of registry order (model_names()); names it does not know sort last."""
    names = model_names()
    return names.index(name) if name in names else len(names)


def ordered_names(names):
    """The distinct names of `names` in registry order."""
    return sorted(set(names), key=name_rank)


def load_config(name):
    """The validated config of a name or id; a deep copy, so callers may edit it."""
    configs = _all_configs()
    if name in configs:
        return json.loads(json.dumps(configs[name]))
    for cfg in configs.values():
        if str(name).lower() == cfg["id"].lower():
            return json.loads(json.dumps(cfg))
    known = ", ".join(f"{n} ({configs[n]['id']})" if configs[n]["id"] != n else n for n in model_names())
    raise UserError(f"unknown dataset/model {name!r}; known: {known}")


def build_model(name, fold=1, channel_mult=None, align=1):
    """The model of `name` folded `fold` times, initialized as in the original recipe.

    fold=1 is the original CNN; fold>1 takes 3f channels, widens internal layers by
    sqrt(f) (or `channel_mult`), rounds them up to multiples of `align`, emits f*K logits.
    """
    cfg = load_config(name)
    check_fold(fold)
    return init_weights(BUILDERS[cfg["family"]](cfg, fold, channel_mult, align))


def input_shape(name, fold=1):
    """(channels, height, width) of one input of the model folded `fold` times."""
    cfg = load_config(name)
    check_fold(fold)
    return (cfg["input"]["channels"] * fold, cfg["input"]["height"], cfg["input"]["width"])


def build_compound_scaled(name):
    """The EfficientNet-style shrunken baseline of a game model (the paper's comparison with EfficientNet compound scaling)."""
    cfg = load_config(name)
    if cfg["family"] != "game":
        raise UserError(f"the EfficientNet baseline exists for game models only, not {cfg['name']!r}")
    return init_weights(build_compound_scaled_cnn(cfg))


def compound_scaled_input_shape(name):
    cfg = load_config(name)
    if cfg["family"] != "game":
        raise UserError(f"the EfficientNet baseline exists for game models only, not {cfg['name']!r}")
    return (cfg["input"]["channels"], *compound_scaled_input_size(cfg))
