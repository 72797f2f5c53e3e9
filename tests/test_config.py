"""The typed config system: presets load, overrides apply, bad keys and values name their field."""

import re
from dataclasses import dataclass, field
from typing import Literal

import pytest
import yaml

from core import config
from core.config import ConfigError


@dataclass
class Inner:
    lo: int = 1
    hi: int = 2

    def validate(self, where):
        if self.hi < self.lo:
            raise ConfigError(f"{where}.hi: below lo")


@dataclass
class Outer:
    name: str = "x"
    rate: float = 0.5
    mode: Literal["a", "b"] = "a"
    cap: int | None = None
    ranges: list[Inner] = field(default_factory=list)
    table: dict[str, int] = field(default_factory=dict)


def test_build_coerces_and_nests():
    cfg = config.build(Outer, {"rate": 1, "ranges": [{"lo": 3, "hi": 4}], "table": {"a": 2}}, "s")
    assert cfg.rate == 1.0 and isinstance(cfg.rate, float)
    assert cfg.ranges == [Inner(3, 4)] and cfg.table == {"a": 2}
    assert config.to_dict(cfg)["ranges"] == [{"lo": 3, "hi": 4}]


@pytest.mark.parametrize("data, field_name", [
    ({"nme": "x"}, "s.nme"),
    ({"rate": "fast"}, "s.rate"),
    ({"mode": "c"}, "s.mode"),
    ({"ranges": [{"lo": 1}, {"lo": 5, "hi": 2}]}, "s.ranges[1].hi"),
    ({"ranges": [{"lo": 1, "bogus": 2}]}, "s.ranges[0].bogus"),
    ({"cap": True}, "s.cap"),
])
def test_errors_name_the_field(data, field_name):
    with pytest.raises(ConfigError, match="^" + re.escape(field_name)):
        config.build(Outer, data, "s")


def test_overrides_parse_yaml_and_set_nested(tmp_path):
    preset = tmp_path / "p.yaml"
    preset.write_text(yaml.safe_dump({"sec": {"name": "y", "ranges": [{"lo": 1, "hi": 2}]}}))
    overrides = config.parse_overrides(["--rate", "0.25", "--ranges.0.hi=9", "--table", "{k: 3}"])
    cfg = config.load(Outer, str(preset), "sec", overrides)
    assert (cfg.name, cfg.rate, cfg.ranges[0].hi, cfg.table) == ("y", 0.25, 9, {"k": 3})
    with pytest.raises(ConfigError, match="ranges.5"):
        config.load(Outer, str(preset), "sec", {"ranges.5.hi": 1})
    assert config.parse_overrides(["--lr", "1e-3", "--name", "zoo"]) == {"lr": 0.001, "name": "zoo"}
    with pytest.raises(ConfigError, match="needs a value"):
        config.parse_overrides(["--rate"])


def test_unknown_preset_lists_known():
    with pytest.raises(ConfigError, match="known presets: .*smoke"):
        config.load_preset_section("no-such-preset", "datagen")


@pytest.mark.parametrize("name", config.preset_names())
def test_every_preset_section_loads(name):
    """Every section of every preset builds into its stage's typed config."""
    from tests.sections import SECTIONS

    data = yaml.safe_load(config.preset_path(name).read_text())
    assert data, f"{name} is empty"
    unknown = set(data) - set(SECTIONS)
    assert not unknown, f"preset {name} has sections no stage reads: {unknown}"
    for section in data:
        config.load(SECTIONS[section](), name, section)


@pytest.mark.parametrize("name", config.preset_names())
def test_every_stage_runs_on_the_processes_its_resources_ask_for(name):
    """A stage's global batch must split evenly over the `nodes x tasks_per_node` ranks its preset's resources
    start, or the SLURM job would fail only once it is scheduled."""
    from sweeps.executors import SweepResources
    from tests.sections import SECTIONS

    resources = config.load(SweepResources, name, "resources")
    for stage, res in resources.by_stage().items():
        if stage == "datagen":
            continue
        placed = {"devices": res.tasks_per_node, "num_nodes": res.nodes}
        cfg = config.load(SECTIONS[stage](), name, stage, placed)
        assert cfg.world_size == res.world_size
        # run by hand (`lab pretrain --preset NAME`) a stage takes the same processes as in a sweep
        own = config.load(SECTIONS[stage](), name, stage)
        assert (own.devices, own.num_nodes) == (res.tasks_per_node, res.nodes), f"{name}: {stage}"
        assert not res.gpus_per_node or res.gpus_per_node == res.tasks_per_node
