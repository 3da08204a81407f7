"""Curriculum learning: the schedule of classes per epoch, its defaults and per-fold
overrides from the configs, and how training batches and evaluation follow it."""
import pytest
import torch

import models
from datasets.curriculum import Curriculum, active_indices, curriculum_for
from util.errors import UserError
from datasets.batches import evaluation_order, training_batches
from fold_trainer import resolve_recipe


def classes_per_epoch(schedule, epochs):
    return [schedule.active_classes(e) for e in range(epochs)]


def test_schedule_adds_delta_classes_every_e_epochs_until_all_are_in():
    schedule = Curriculum(num_classes=11, initial=2, delta=3, epochs_per_step=4)
    assert classes_per_epoch(schedule, 20) == [2] * 4 + [5] * 4 + [8] * 4 + [11] * 8
    assert schedule.complete_epoch() == 12
    assert schedule.active_classes(10_000) == 11


def test_defaults_follow_the_paper_rule():
    # I = max(K // 10, f), delta = max(K // 10, 1), E = 60 from the config.
    v1 = curriculum_for(models.load_config("V1"), fold=2)  # K = 11
    assert (v1.initial, v1.delta, v1.epochs_per_step) == (2, 1, 60)
    assert classes_per_epoch(v1, 181)[::60] == [2, 3, 4, 5]
    v4 = curriculum_for(models.load_config("V4"), fold=3)  # K = 27
    assert (v4.initial, v4.delta, v4.epochs_per_step) == (3, 2, 60)
    v6 = curriculum_for(models.load_config("V6"), fold=2)  # K = 62
    assert (v6.initial, v6.delta, v6.epochs_per_step) == (6, 6, 60)
    assert v6.complete_epoch() == 10 * 60  # 6 + 9 * 6 = 60 < 62 <= 6 + 10 * 6


def test_v6_at_f4_uses_its_tuned_curriculum_and_3000_epochs():
    schedule = curriculum_for(models.load_config("lol-time"), fold=4)
    assert (schedule.initial, schedule.delta, schedule.epochs_per_step) == (4, 3, 120)
    per_epoch = classes_per_epoch(schedule, 3000)
    assert per_epoch[0] == per_epoch[119] == 4 and per_epoch[120] == 7 and per_epoch[240] == 10
    assert schedule.complete_epoch() == 20 * 120  # 4 + 20 * 3 = 64 >= 62
    assert per_epoch[2399] == 61 and per_epoch[2400] == 62 and per_epoch[-1] == 62
    recipe = resolve_recipe("V6", 4)
    assert recipe["epochs"] == 3000 and recipe["curriculum"]["epochs_per_step"] == 120
    assert resolve_recipe("V6", 3)["epochs"] == 1500  # the override is for f = 4 only


def test_curriculum_is_on_for_folded_game_models_only_unless_asked():
    assert resolve_recipe("V1", 1)["curriculum"] is None
    assert resolve_recipe("V1", 2)["curriculum"] is not None
    assert resolve_recipe("night", 2)["curriculum"] is None
    assert resolve_recipe("cifar10", 4)["curriculum"] is None
    assert resolve_recipe("V1", 2, curriculum=False)["curriculum"] is None
    assert resolve_recipe("V1", 1, curriculum=True)["curriculum"]["initial"] == 1
    assert resolve_recipe("V1", 3, curriculum_epochs=2)["curriculum"]["epochs_per_step"] == 2
    with pytest.raises(UserError, match="no curriculum"):
        resolve_recipe("cifar10", 2, curriculum=True)


def test_state_round_trips_and_bad_values_are_user_errors():
    schedule = curriculum_for(models.load_config("V6"), fold=4)
    assert Curriculum.from_state_dict(schedule.state_dict()) == schedule
    with pytest.raises(UserError, match="epochs_per_step"):
        Curriculum(num_classes=10, initial=1, delta=1, epochs_per_step=0)


def test_training_batches_and_evaluation_use_only_active_classes():
    labels = torch.arange(10).repeat_interleave(30)  # class-sorted, like an image folder
    generator = torch.Generator().manual_seed(0)
    batches = training_batches(labels, batch_size=16, fold=4, generator=generator, num_active=3)
    drawn = torch.cat(batches)
    assert set(labels[drawn].tolist()) == {0, 1, 2}
    assert len(drawn) == 88 and len(set(drawn.tolist())) == 88  # 90 images, 2 sit out (not a group of 4)
    assert all(len(b) % 4 == 0 for b in batches)
    assert torch.equal(active_indices(labels, 3), torch.arange(90))
    order, count = evaluation_order(labels, fold=4, num_active=3)
    assert count == 90 and len(order) == 92
    assert set(labels[order].tolist()) == {0, 1, 2} and set(order[:count].tolist()) == set(range(90))
