"""flop_count.sh / model_map.json and ai.py."""
import json
import subprocess
import sys

import models
from models.flops import MODEL_MAP_PATH, count_flops
from tests.helpers import assert_clean_error, run_cli
from util.arith_intensity import conv_layer_table, layer_costs


def test_flops_are_twice_the_macs_of_conv_and_linear_layers():
    """thop's count agrees with an independent count from the layer shapes."""
    for name in ["V1", "N3"]:
        for fold in (1, 3):
            model, shape = models.build_model(name, fold), models.input_shape(name, fold)
            assert count_flops(model, shape) == sum(c.ops for c in layer_costs(model, shape, 1))


def test_folding_keeps_flops_per_image_about_equal():
    table = json.loads(MODEL_MAP_PATH.read_text())
    for name in ["lol-gold1", "night", "taipei"]:
        per_image = [table[name]["og_ops"]] + [table[name][f"fold{f}_ops"] / f for f in (2, 3, 4)]
        assert all(abs(x / per_image[0] - 1) < 0.15 for x in per_image), per_image


def test_table1_layer():
    t = conv_layer_table(32, 32, 3, 3, 11, 26, 1024, 4)
    assert round(t["original"]["intensity"], 2) == 143.93
    assert round(t["folded"]["intensity"], 2) == 286.87
    assert t["original"]["ops"] == t["folded"]["ops"] and t["traffic_reduced"]


def test_ai_layer_cli_prints_table1(repo):
    proc = run_cli("ai.py", "--layer", "--ci", 32, "--co", 32, "--kh", 3, "--kw", 3, "--h", 11, "--w", 26,
                   "--n", 1024, "--fold", 4, "--bytes", 2, "--groups", 1)
    assert proc.returncode == 0, proc.stderr
    assert "143.93" in proc.stdout and "286.87" in proc.stdout
    assert "18.74M" in proc.stdout and "5398.07M" in proc.stdout and "holds" in proc.stdout


def test_ai_layer_cli_reads_named_layers():
    proc = run_cli("ai.py", "--layer", "G32", "--fold", 4)
    assert proc.returncode == 0, proc.stderr
    assert "groups=4" in proc.stdout and "36.00" in proc.stdout and "71.99" in proc.stdout


def test_appendix_j_inequality_fails_at_tiny_batch():
    t = conv_layer_table(64, 64, 3, 3, 1, 1, 4, 4)
    assert not t["traffic_reduced"] and t["folded"]["intensity"] < t["original"]["intensity"]


def test_ai_default_table_covers_game_and_noscope_models():
    proc = run_cli("ai.py")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[0] == "model,batch_size,original_AI,tformed_AI_2,tformed_AI_3,tformed_AI_4"
    rows = {line.split(",")[0]: [float(v) for v in line.split(",")[2:]] for line in lines[1:]}
    expected = {n for n in models.model_names() if models.load_config(n)["family"] in ("game", "noscope")}
    assert set(rows) == expected
    assert all(r[0] < r[1] < r[2] < r[3] for r in rows.values())  # intensity rises with f


def test_ai_per_layer_and_errors():
    proc = run_cli("ai.py", "--per-layer", "V1", "--fold", "4")
    assert proc.returncode == 0 and "linear" in proc.stdout and "conv3x3" in proc.stdout
    assert_clean_error(run_cli("ai.py", "--per-layer", "V9"), "unknown dataset/model 'V9'")
    assert_clean_error(run_cli("ai.py", "--layer", "--ci", 30, "--groups", 4), "not divisible by --groups")


def test_model_map_equals_what_flop_count_sh_writes(tmp_path, repo):
    """The committed table equals a fresh thop count made by the user-facing script."""
    out = tmp_path / "map.json"
    proc = subprocess.run(["bash", "flop_count.sh", "--out", str(out)], cwd=repo, capture_output=True, text=True,
                          env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    committed = json.loads(MODEL_MAP_PATH.read_text())
    assert json.loads(out.read_text()) == committed
    assert set(committed) == set(models.model_names())
