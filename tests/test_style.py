"""Every plugin model documents itself: docstring with a paper reference, a commented yaml,
and a tuning search space whose keys the model reads."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest
import recbole

from recbole_ext.config import PROPERTIES_DIR, load_yaml_file
from recbole_ext.registry import PLUGIN_MODELS


@pytest.mark.parametrize("name", sorted(PLUGIN_MODELS))
def test_model_module_docstring_cites_a_paper(name):
    module = importlib.import_module(PLUGIN_MODELS[name].partition(":")[0])
    doc = module.__doc__ or ""
    assert len(doc) > 200, f"{module.__name__} needs a module docstring (paper, equations, deviations)"
    assert re.search(r"arXiv|doi|KDD|SIGIR|RecSys|WSDM|CIKM|WWW|http|Proceedings|et al", doc), \
        f"{module.__name__}'s docstring should cite its paper"


@pytest.mark.parametrize("name", sorted(PLUGIN_MODELS))
def test_model_yaml_exists_and_every_key_is_commented(name):
    path = PROPERTIES_DIR / "model" / f"{name}.yaml"
    assert path.is_file(), f"missing defaults file {path}"
    keys = load_yaml_file(path)
    assert keys, f"{path} is empty"
    for line_no, line in enumerate(path.read_text().splitlines(), 1):
        if re.match(r"^[A-Za-z_]\w*\s*:", line) and not line.rstrip().endswith(":"):
            assert "#" in line, f"{path}:{line_no}: document the key with `# (type) meaning`"


@pytest.mark.parametrize("name", sorted(PLUGIN_MODELS))
def test_model_ships_a_valid_search_space(name):
    from recbole_ext.tuning import check_hyper_file

    path = PROPERTIES_DIR / "hyper" / f"{name}.hyper"
    assert path.is_file(), f"missing search space {path}"
    check_hyper_file(str(path))
    model_keys = set(load_yaml_file(PROPERTIES_DIR / "model" / f"{name}.yaml"))
    recbole_keys = set(load_yaml_file(Path(recbole.__file__).parent / "properties" / "overall.yaml"))
    for line in path.read_text().splitlines():
        key = line.split(" ")[0]
        assert key in model_keys | recbole_keys, f"{path}: `{key}` is not a key of {name} or RecBole"
