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


# Optional fields beside the required ones, and the fields of a per-fold curriculum override;
# any other key is a typo or a field no code reads, and is named.
_OPTIONAL = {"train.curriculum.initial": (int, type(None)), "train.curriculum.delta": (int, type(None)),
             "data.video_hours": _NUM}
_LR_SCHEDULE = {"step_epochs": int, "gamma": _NUM}
_PER_FOLD = ("initial", "delta", "epochs_per_step", "epochs")


def _type_ok(value, types):
    return isinstance(value, types) and not (isinstance(value, bool) and types in (int, _NUM))


def _check_type(path, field, value, types):
    if not _type_ok(value, types):
        names = "/".join(t.__name__ for t in (types if isinstance(types, tuple) else (types,)))
        raise UserError(f"{path}: field '{field}' must be {names}, got {type(value).__name__} {value!r}")


def _check_keys(cfg, path, known, prefix=""):
    """Name the first key of `cfg` (nested dicts included) that no known field starts with."""
    for key, value in cfg.items():
        field = f"{prefix}{key}"
        if field not in known and not any(k.startswith(field + ".") for k in known):
            siblings = sorted({k[len(prefix):].split(".")[0] for k in known if k.startswith(prefix)})
            raise UserError(f"{path}: unknown field '{field}' (known there: {', '.join(siblings)}); "
                            f"fix its spelling or remove it")
        if isinstance(value, dict) and field not in ("train.lr_schedule", "train.curriculum.per_fold"):
            _check_keys(value, path, known, field + ".")


def _check_nested(cfg, path):
    """The sub-structures: the step schedule, the curriculum and its per-fold overrides, the
    NoScope splits (different chunks) and the CIFAR normalization."""
    train = cfg["train"]
    for field, types in _OPTIONAL.items():
        value = _lookup(cfg, field)
        if value is not _MISSING:
            _check_type(path, field, value, types)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise UserError(f"{path}: field '{field}' must be positive, got {value!r}")
    schedule = train["lr_schedule"]
    if schedule is not None:
        if sorted(schedule) != sorted(_LR_SCHEDULE):
            raise UserError(f"{path}: field 'train.lr_schedule' must be null or hold exactly step_epochs and "
                            f"gamma, got {sorted(schedule) or 'an empty object'}")
        for key, types in _LR_SCHEDULE.items():
            _check_type(path, f"train.lr_schedule.{key}", schedule[key], types)
        if schedule["step_epochs"] < 1 or not (math.isfinite(schedule["gamma"]) and 0 < schedule["gamma"] <= 1):
            raise UserError(f"{path}: field 'train.lr_schedule' needs step_epochs >= 1 and 0 < gamma <= 1, "
                            f"got {schedule}")
    for fold, override in ((train.get("curriculum") or {}).get("per_fold") or {}).items():
        where = f"train.curriculum.per_fold.{fold}"
        if not (fold.isdigit() and int(fold) >= 1):
            raise UserError(f"{path}: field '{where}': the keys of per_fold are folds (\"2\", \"4\", ...)")
        _check_type(path, where, override, dict)
        for key, value in override.items():
            if key not in _PER_FOLD:
                raise UserError(f"{path}: unknown field '{where}.{key}' (known there: {', '.join(_PER_FOLD)})")
            _check_type(path, f"{where}.{key}", value, int)
            if value < 1:
                raise UserError(f"{path}: field '{where}.{key}' must be at least 1, got {value}")
    if cfg["family"] == "noscope" and len(set(cfg["data"]["split"].values())) < len(cfg["data"]["split"]):
        raise UserError(f"{path}: field 'data.split' gives two splits the same chunk ({cfg['data']['split']}): "
                        "training, validation and test must be different chunks")
    if cfg["family"] == "cifar":
        for field in ("data.mean", "data.std"):
            values = _lookup(cfg, field)
            if len(values) != cfg["input"]["channels"] or not all(
                    _type_ok(v, _NUM) and math.isfinite(v) and (v > 0 or field == "data.mean") for v in values):
                raise UserError(f"{path}: field '{field}' must be {cfg['input']['channels']} numbers, one per "
                                f"channel{' (positive)' if field == 'data.std' else ''}")


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
        _check_type(path, field, value, types)
    if not cfg["classes"] or not all(isinstance(c, str) for c in cfg["classes"]):
        raise UserError(f"{path}: field 'classes' must be a non-empty list of strings")
    if cfg["classes"] != sorted(cfg["classes"]) and family != "cifar":
        raise UserError(f"{path}: field 'classes' must be in sorted (image-folder) order")
    _check_keys(cfg, path, {**_COMMON, **_BY_FAMILY[family], **_OPTIONAL})
    _check_ranges(cfg, path)
    _check_nested(cfg, path)
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
        twin = next((c for c in configs.values() if c["id"].lower() == cfg["id"].lower()), None)
        if twin is not None:
            raise UserError(f"{path}: id {cfg['id']!r} is also the id of {path.with_name(twin['name'] + '.json')}: "
                            "ids name one config each; change one of them")
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
