"""The one place that maps dataset/model names to configs and builders.

Every `config/<name>.json` (except `model_map.json`) describes one dataset and its model;
its `family` picks one of the families registered below (`Family`: builder, config schema,
data, baselines, recipe defaults). A name is the config's `name` or its `id` (e.g. "lol-gold1"
or "V1"); ids match case-insensitively. Adding a model family: README, "Adding a model".
"""
import functools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from util.errors import UserError

from .common import init_weights
from .folding import check_fold
from .game_cnn import build_compound_scaled_cnn, build_game_cnn, compound_scaled_input_size
from .noscope_cnn import build_noscope_cnn
from .resnet import build_resnet18

CONFIG_DIR = Path(__file__).resolve().parent.parent / "config"
NON_MODEL_CONFIGS = {"model_map.json"}


@dataclass(frozen=True)
class Family:
    """Everything the code knows about one model family, registered once (`register_family`).

    build(cfg, fold=1, channel_mult=None, align=1) -> nn.Module: the model of a config
        folded `fold` times: `cfg["input"]["channels"] * fold` input channels, internal
        widths `models.folded_width(w, fold, channel_mult, align)`, `len(cfg["classes"]) * fold`
        outputs (image j's logits in block j, models.unfold_outputs). `build_model` applies
        the original recipe's init (models/common.py) to what it returns.
    schema: the config fields this family needs beyond the common ones, dotted path ->
        type(s), and `at_least`: the smallest value of its numeric fields.
    check(cfg, path): further config checks (a one-line UserError), or None.
    data_folders(cfg) -> folder names under the data root that may hold the dataset (the
        first that exists is used); `data_format`: how datasets/ reads it ("image_folder":
        <folder>/<split>/<class>/<image>, or "cifar": torchvision's CIFAR files).
    make_data: the command that makes the data ({name}, {root} and {folder} filled in), shown
        when it is missing; `synthesize`: the `python -m` arguments of a generator that makes
        a stand-in at full size, or None; `paper_data`: the command for the paper's data in
        the report's rerun list, or None.
    compound_scaled: (build(cfg), input_size(cfg) -> (H, W)) of the EfficientNet-style
        baseline, or None where the paper has none.
    curriculum: folded models train with the config's curriculum unless the recipe says otherwise.
    batchnorm_while_training: the recipe's train_bn applies (plain conv stacks, models/batchnorm.py).
    """
    name: str
    build: Callable
    schema: dict
    data_folders: Callable
    make_data: str
    data_format: str = "image_folder"
    at_least: dict = field(default_factory=dict)
    check: Optional[Callable] = None
    synthesize: Optional[tuple] = None
    paper_data: Optional[str] = None
    compound_scaled: Optional[tuple] = None
    curriculum: bool = False
    batchnorm_while_training: bool = False


FAMILIES = {}  # name -> Family, in registration order (the order of model_names())


def register_family(family):
    """Add a model family; its configs (`"family": family.name`) then build, train and run."""
    if family.name in FAMILIES:
        raise ValueError(f"model family {family.name!r} is registered already")
    FAMILIES[family.name] = family
    return family


def family_of(name_or_cfg):
    """The Family of a dataset/model name or id, or of a config."""
    cfg = name_or_cfg if isinstance(name_or_cfg, dict) else load_config(name_or_cfg)
    return FAMILIES[cfg["family"]]


# Required fields of every config: dotted path -> accepted type(s). `None` in a tuple allows null.
_NUM = (int, float)
_COMMON = {
    "name": str, "id": str, "family": str, "description": str,
    "input": dict, "input.channels": int, "input.height": int, "input.width": int,
    "classes": list, "arch": dict, "data": dict, "data.kind": str,
    "train": dict, "train.epochs": int, "train.batch_size": int, "train.optimizer": str,
    "train.lr": _NUM, "train.weight_decay": _NUM, "train.lr_schedule": (dict, type(None)),
    "train.augment": str, "train.curriculum": (dict, type(None)), "train.distill_folded": bool,
}
# Numbers that must be in range: (dotted path, smallest value). A type check alone lets a
# height of -5 or a conv_width of 0 through to a crash deep inside PyTorch.
_COMMON_AT_LEAST = {"input.channels": 1, "input.height": 1, "input.width": 1, "train.epochs": 1,
                    "train.batch_size": 1, "train.weight_decay": 0, "train.curriculum.epochs_per_step": 1}


def _check_noscope(cfg, path):
    if len(set(cfg["data"]["split"].values())) < len(cfg["data"]["split"]):
        raise UserError(f"{path}: field 'data.split' gives two splits the same chunk ({cfg['data']['split']}): "
                        "training, validation and test must be different chunks")
    for split, chunk in cfg["data"]["split"].items():
        if chunk > cfg["data"]["chunks"]:
            raise UserError(f"{path}: field 'data.split.{split}' is chunk {chunk}, "
                            f"but 'data.chunks' is {cfg['data']['chunks']}")


def _check_cifar(cfg, path):
    for key in ("widths", "blocks"):
        values = cfg["arch"][key]
        if not values or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values):
            raise UserError(f"{path}: field 'arch.{key}' must be a non-empty list of whole numbers >= 1")
    for dotted in ("data.mean", "data.std"):
        values = _lookup(cfg, dotted)
        if len(values) != cfg["input"]["channels"] or not all(
                _type_ok(v, _NUM) and math.isfinite(v) and (v > 0 or dotted == "data.mean") for v in values):
            raise UserError(f"{path}: field '{dotted}' must be {cfg['input']['channels']} numbers, one per "
                            f"channel{' (positive)' if dotted == 'data.std' else ''}")


register_family(Family(
    "game", build_game_cnn,
    schema={"arch.conv_width": int, "arch.units": int, "arch.last_conv_width": int,
            "data.source": str, "data.per_class": dict, "data.per_class.train": int,
            "data.per_class.val": int, "data.per_class.test": int,
            "train.curriculum.epochs_per_step": int, "train.curriculum.per_fold": dict},
    at_least={"arch.conv_width": 1, "arch.units": 1, "arch.last_conv_width": 1, "data.per_class.train": 1,
              "data.per_class.val": 1, "data.per_class.test": 1},
    data_folders=lambda cfg: [cfg["name"], cfg["data"]["source"]],
    make_data=("python -m datasets.game_synth {name} --out {root} "
               "(or untar the original game data so that {root}/{source} exists)"),
    synthesize=("datasets.game_synth", "{name}", "--out", "{root}"),
    paper_data="python -m datasets.game_synth {name} --scale 1   # or --data-root /path/to/game_data",
    compound_scaled=(build_compound_scaled_cnn, compound_scaled_input_size),
    curriculum=True, batchnorm_while_training=True))

register_family(Family(
    "noscope", build_noscope_cnn,
    schema={"arch.filters": int, "arch.four_convs": bool, "arch.dense": int,
            "data.object": str, "data.chunks": int, "data.split": dict,
            "data.split.train": int, "data.split.val": int, "data.split.test": int},
    at_least={"arch.filters": 1, "arch.dense": 1, "data.chunks": 1, "data.split.train": 1,
              "data.split.val": 1, "data.split.test": 1},
    check=_check_noscope,
    data_folders=lambda cfg: [cfg["name"]],
    make_data=("python -m datasets.noscope_synth {name} --build --out {root} "
               "(or split the real video with python -m scripts.noscope_split {name} {folder} ...)"),
    synthesize=("datasets.noscope_synth", "{name}", "--build", "--out", "{root}"),
    paper_data=("python -m scripts.noscope_video_save VIDEO.mp4 frames/ && "
                "python -m scripts.noscope_split {name} data/{name} --infile LABELS.csv --indir frames/"),
    batchnorm_while_training=True))

register_family(Family(
    "cifar", build_resnet18,
    schema={"arch.widths": list, "arch.blocks": list, "data.source": str,
            "data.val_images": int, "data.mean": list, "data.std": list},
    at_least={"data.val_images": 1},
    check=_check_cifar,
    data_folders=lambda cfg: [cfg["data"]["source"]],
    data_format="cifar",
    make_data="put the extracted '{source}' folder (from the CIFAR python tarball; data/README.md) under {root}/"))


def _lookup(cfg, dotted):
    node = cfg
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            return _MISSING
        node = node[key]
    return node


_MISSING = object()

# Optional fields beside the required ones, and the fields of a per-fold curriculum override;
# any other key is a typo or a field no code reads, and is named.
_OPTIONAL = {"train.curriculum.initial": (int, type(None)), "train.curriculum.delta": (int, type(None)),
             "data.video_hours": _NUM}
_LR_SCHEDULE = {"step_epochs": int, "gamma": _NUM}
# A curriculum's fields (datasets/curriculum.py), known to every family that has one.
_CURRICULUM = {"train.curriculum.epochs_per_step": int, "train.curriculum.per_fold": dict}
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
    """The sub-structures: the step schedule and the curriculum with its per-fold overrides
    (a family's own sub-structures are its Family.check)."""
    train = cfg["train"]
    for dotted, types in _CURRICULUM.items():
        value = _lookup(cfg, dotted)
        if value is not _MISSING:
            _check_type(path, dotted, value, types)
    for dotted, types in _OPTIONAL.items():
        value = _lookup(cfg, dotted)
        if value is not _MISSING:
            _check_type(path, dotted, value, types)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise UserError(f"{path}: field '{dotted}' must be positive, got {value!r}")
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


def _check_ranges(cfg, path, family):
    for field_name, least in {**_COMMON_AT_LEAST, **family.at_least}.items():
        value = _lookup(cfg, field_name)
        if value is not _MISSING and not (math.isfinite(value) and value >= least):
            raise UserError(f"{path}: field '{field_name}' must be at least {least}, got {value!r}")
    lr = cfg["train"]["lr"]
    if not (math.isfinite(lr) and lr > 0):
        raise UserError(f"{path}: field 'train.lr' must be a positive number, got {lr!r}")
    if family.check is not None:
        family.check(cfg, path)


def validate_config(cfg, path):
    """Raise a one-line UserError naming the file and field of the first problem."""
    if not isinstance(cfg, dict):
        raise UserError(f"{path}: a config must be a JSON object")
    family = FAMILIES.get(cfg.get("family"))
    if family is None:
        raise UserError(f"{path}: field 'family' must be one of {sorted(FAMILIES)}, got {cfg.get('family')!r}")
    for field_name, types in {**_COMMON, **family.schema}.items():
        value = _lookup(cfg, field_name)
        if value is _MISSING:
            if field_name.startswith("train.curriculum.") and cfg["train"].get("curriculum") is None:
                continue
            raise UserError(f"{path}: missing field '{field_name}'")
        _check_type(path, field_name, value, types)
    if not cfg["classes"] or not all(isinstance(c, str) for c in cfg["classes"]):
        raise UserError(f"{path}: field 'classes' must be a non-empty list of strings")
    if cfg["classes"] != sorted(cfg["classes"]) and family.data_format == "image_folder":
        raise UserError(f"{path}: field 'classes' must be in sorted (image-folder) order")
    _check_keys(cfg, path, {**_COMMON, **_CURRICULUM, **family.schema, **_OPTIONAL})
    _check_nested(cfg, path)
    _check_ranges(cfg, path, family)
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
    order = list(FAMILIES)
    return sorted(configs, key=lambda n: (order.index(configs[n]["family"]), configs[n]["id"]))


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
    return build_from_config(load_config(name), fold, channel_mult, align)


def build_from_config(cfg, fold=1, channel_mult=None, align=1):
    """build_model of a validated config (validate_config) rather than a name."""
    check_fold(fold)
    return init_weights(FAMILIES[cfg["family"]].build(cfg, fold, channel_mult, align))


def input_shape(name, fold=1):
    """(channels, height, width) of one input of the model folded `fold` times."""
    cfg = load_config(name)
    check_fold(fold)
    return (cfg["input"]["channels"] * fold, cfg["input"]["height"], cfg["input"]["width"])


def _compound_scaled(name):
    cfg = load_config(name)
    if FAMILIES[cfg["family"]].compound_scaled is None:
        with_one = [f for f, family in FAMILIES.items() if family.compound_scaled is not None]
        raise UserError(f"the EfficientNet baseline exists for {'/'.join(with_one)} models only, not {cfg['name']!r}")
    return cfg, FAMILIES[cfg["family"]].compound_scaled


def has_compound_scaled(name):
    """Whether the paper compares `name` with an EfficientNet-style compound-scaled baseline."""
    return family_of(name).compound_scaled is not None


def build_compound_scaled(name):
    """The EfficientNet-style shrunken baseline of a game model (the paper's comparison with EfficientNet compound scaling)."""
    cfg, (build, _) = _compound_scaled(name)
    return init_weights(build(cfg))


def compound_scaled_input_shape(name):
    cfg, (_, input_size) = _compound_scaled(name)
    return (cfg["input"]["channels"], *input_size(cfg))


# ----------------------------------------------------------------------------------------
# Variants: the models a sweep trains and times for one dataset. "original" (f = 1) and
# "folded" (f > 1) are the paper's; "narrow" (the original CNN with every internal layer
# narrowed by 1/sqrt(f), one image per input: what a FoldedCNN's per-image share of compute
# buys unfolded) and "compound" (the EfficientNet-style shrunken CNN of section 5) are what
# a user could run instead at a similar throughput.
VARIANTS = ("original", "folded", "narrow", "compound")
BASELINES = ("narrow", "compound")


def variant_of(fold, variant=None):
    """The variant of a job: `variant` if given (narrow or compound), else original at f = 1
    and folded above; a one-line UserError for an unknown one or a fold that does not fit."""
    fold = check_fold(fold)
    if variant in (None, "original", "folded"):
        return "original" if fold == 1 else "folded"
    if variant not in BASELINES:
        raise UserError(f"unknown variant {variant!r}; use one of {', '.join(BASELINES)} (or none for the "
                        f"original/folded CNN)")
    if variant == "narrow" and fold == 1:
        raise UserError("the narrow CNN of f is the original narrowed by 1/sqrt(f): give a fold f >= 2")
    if variant == "compound" and fold != 1:
        raise UserError("the compound-scaled CNN classifies one image per input: give fold 1")
    return variant


def variant_folder(variant, fold):
    """The job folder name of a variant under <savedir>/<dataset>/: fold<f>, narrow<f> or compound."""
    return {"original": f"fold{fold}", "folded": f"fold{fold}", "narrow": f"narrow{fold}",
            "compound": "compound"}[variant]


def narrow_mult(fold):
    """channel_mult of the narrow CNN of f: 1/sqrt(f), so that f of them cost about one
    FoldedCNN of f (models.folding's width rule, inverted)."""
    return 1.0 / math.sqrt(check_fold(fold))


def build_variant(name, variant, fold=1):
    """The model of `name` in `variant` (variant_of), initialized as in the original recipe:
    the narrow CNN of f takes one image, the compound-scaled CNN one image at its lower
    resolution (variant_input_shape)."""
    variant = variant_of(fold, variant)
    if variant == "narrow":
        return build_model(name, 1, channel_mult=narrow_mult(fold))
    if variant == "compound":
        return build_compound_scaled(name)
    return build_model(name, fold)


def variant_input_shape(name, variant, fold=1):
    """(channels, height, width) of one input of build_variant(name, variant, fold)."""
    variant = variant_of(fold, variant)
    if variant == "compound":
        return compound_scaled_input_shape(name)
    return input_shape(name, 1 if variant == "narrow" else fold)


def images_per_input(variant, fold):
    """How many images one input of the variant carries: f for a FoldedCNN, else 1."""
    return fold if variant_of(fold, variant) == "folded" else 1
