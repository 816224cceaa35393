"""Paper presets state what differs from the model's defaults, plus marked keys that repeat one:
``[paper]`` a setting of the paper worth seeing, ``[shared]`` a key another model that runs
with this preset needs (e.g. BiasedMF with ``nrp-ml-100k``)."""

from __future__ import annotations

import re

import pytest

from recbole_ext.config import PROPERTIES_DIR, Config, available_presets, load_yaml_file

MARKS = ("[paper]", "[shared]")


def key_lines(path) -> dict[str, str]:
    return {m[1]: line for line in path.read_text().splitlines() if (m := re.match(r"^([A-Za-z_]\w*):", line))}


@pytest.mark.parametrize("preset", available_presets())
def test_preset_keys_that_repeat_a_default_are_marked_as_paper_settings(preset):
    path = PROPERTIES_DIR / "paper" / f"{preset}.yaml"
    raw = load_yaml_file(path)
    defaults = Config(model=raw["model"], dataset=raw["dataset"])
    lines = key_lines(path)
    missing = object()
    repeated = [key for key, value in raw.items() if key not in ("model", "dataset")
                and defaults.external_config_dict.get(key, defaults.internal_config_dict.get(key, missing)) == value]
    unmarked = [key for key in repeated if not any(mark in lines[key] for mark in MARKS)]
    assert not unmarked, (f"{path.name}: {unmarked} repeat {raw['model']}'s defaults; drop them or mark "
                          f"them {' or '.join(MARKS)} in their comment")
    marked_but_differing = [key for key, line in lines.items()
                            if any(mark in line for mark in MARKS) and key not in repeated]
    assert not marked_but_differing, f"{path.name}: {marked_but_differing} are marked but differ from the default"
