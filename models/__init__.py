"""FoldedCNN model zoo: `build_model(name, fold)`, the folding layout and the registry."""
from .batchnorm import fold_batchnorm, insert_batchnorm
from .folding import FOLDS, block_diagonal_, fold_inputs, folded_width, unfold_outputs, width_multiplier
from .registry import (BASELINES, FAMILIES, VARIANTS, Family, build_compound_scaled, build_from_config, build_model,
                       compound_scaled_input_shape, family_of, has_compound_scaled, input_shape, load_config,
                       model_names, name_rank, ordered_names, register_family, validate_config,
                       build_variant, variant_of, variant_folder, variant_input_shape, images_per_input,
                       narrow_mult)

__all__ = ["build_model", "input_shape", "fold_inputs", "unfold_outputs", "model_names",
           "load_config", "validate_config", "folded_width", "width_multiplier",
           "build_compound_scaled", "compound_scaled_input_shape", "FOLDS", "name_rank", "ordered_names",
           "block_diagonal_", "insert_batchnorm", "fold_batchnorm", "FAMILIES", "Family", "register_family",
           "family_of", "has_compound_scaled", "build_from_config", "BASELINES", "VARIANTS", "build_variant",
           "variant_of", "variant_folder", "variant_input_shape", "images_per_input", "narrow_mult"]
