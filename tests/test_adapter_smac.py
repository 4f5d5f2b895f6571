"""SMAC / SMACv2 on StarCraft II: the missing-dependency message (always tested) and real episodes
(skipped, with the reason, where the smacv2 package, the StarCraft II binary or the maps are absent)."""

import pytest
import torch

from coopbench.base.errors import CoopbenchError, MissingDependencyError
from environments.adapters import smac_adapter
from environments.adapters.smac_adapter import SMAC_CLASSES, SMAC_MAPS, SMACV2_CLASSES, missing_requirements

INVENTORY_MAPS = {"2s3z", "3s5z", "1c3s5z", "5m_vs_6m", "10m_vs_11m", "27m_vs_30m", "3s5z_vs_3s6z", "MMM2",
                  "2s_vs_1sc", "3s_vs_5z", "6h_vs_8z", "bane_vs_bane", "2c_vs_64zg", "corridor", "8m", "3m"}


def test_every_inventory_map_and_smacv2_scenario_has_a_task():
    assert set(SMAC_MAPS) == INVENTORY_MAPS == set(SMAC_CLASSES)
    assert {cls.task_name() for cls in SMAC_CLASSES.values()} == {f"smac/{m}" for m in INVENTORY_MAPS}
    assert {cls.task_name() for cls in SMACV2_CLASSES.values()} == {
        "smacv2/protoss_5_vs_5", "smacv2/zerg_5_vs_5", "smacv2/protoss_10_vs_11", "smacv2/terran_10_vs_11",
        "smacv2/zerg_10_vs_11"}
    for cls in SMAC_CLASSES.values():  # the module attribute the registry's "module:Class" names
        assert getattr(smac_adapter, cls.__name__) is cls


def test_missing_starcraft_fails_at_construction_with_one_message(tmp_path, monkeypatch):
    monkeypatch.setenv("SC2PATH", str(tmp_path / "nowhere"))
    for cls in (SMAC_CLASSES["3m"], SMACV2_CLASSES["protoss_5_vs_5"]):
        with pytest.raises(MissingDependencyError) as info:
            cls(n_envs=2, seed=0)
        message = str(info.value)
        assert isinstance(info.value, CoopbenchError) and "\n" not in message
        assert "StarCraft II binary" in message and "SC2PATH" in message and str(tmp_path / "nowhere") in message
        assert "s2client-proto" in message  # how to install it
    if missing_requirements() is not None and "smacv2 package" in str(missing_requirements()):
        assert "pip install" in message and "smacv2" in message


def test_maps_missing_is_reported_when_the_binary_is_there(tmp_path, monkeypatch):
    (tmp_path / "Versions" / "Base75689").mkdir(parents=True)
    monkeypatch.setenv("SC2PATH", str(tmp_path))
    error = missing_requirements("2s_vs_1sc")
    assert error is not None and "2s_vs_1sc.SC2Map" in str(error) and "StarCraft II binary" not in str(error)
    (tmp_path / "Maps" / "SMAC_Maps").mkdir(parents=True)
    (tmp_path / "Maps" / "SMAC_Maps" / "2s_vs_1sc.SC2Map").touch()
    error = missing_requirements("2s_vs_1sc")
    assert error is None or "smacv2 package" in str(error) and "SC2Map" not in str(error)


REASON = missing_requirements("3m")


@pytest.mark.skipif(REASON is not None, reason=f"StarCraft II tests need: {REASON}")
@pytest.mark.slow
def test_random_episodes_on_starcraft(monkeypatch):
    monkeypatch.setenv("COOPBENCH_ENV_WORKERS", "0")
    env = SMAC_CLASSES["3m"](n_envs=1, seed=0)
    spec, g = env.spec, torch.Generator().manual_seed(0)
    assert spec.family == "smac" and spec.n_agents == 3 and spec.has_action_mask
    ts, ended = env.reset(), 0
    for _ in range(200):
        avail = ts.avail_actions
        ts = env.step(torch.multinomial(avail.float().flatten(0, 1), 1, generator=g).view(avail.shape[:2]))
        assert ts.obs.shape == (1, 3, spec.obs_dim) and ts.state.shape == (1, spec.state_dim)
        assert torch.equal(ts.reward, ts.reward[:, :1].expand(-1, 3))
        if ts.done[0]:
            ended += 1
            assert ts.extras["won"][0].item() in (0.0, 1.0) and ts.episode_length[0] <= spec.episode_limit
            assert 0.0 <= ts.episode_return[0].item() <= 20.0 + 1e-3
    assert ended >= 1
    env.close()
