"""algorithms/adam.py: torch's Adam kernel without torch.optim.Optimizer (which imports torch._dynamo)."""

import copy
import subprocess
import sys

import torch

from algorithms.blocks.adam import Adam


def _model(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))


def _train(model, optimizer, steps: int, seed: int = 1) -> None:
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randn(32, 5, generator=gen)
        loss = (model(x) ** 2).mean() + model[0].weight.abs().sum() * 1e-3
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def test_bitwise_equal_to_torch_adam_and_state_dict_format():
    ours_model, ref_model = _model(0), _model(0)
    ours = Adam(ours_model.parameters(), lr=3e-3, eps=1e-5)
    ref = torch.optim.Adam(ref_model.parameters(), lr=3e-3, eps=1e-5)
    _train(ours_model, ours, 7)
    _train(ref_model, ref, 7)
    for a, b in zip(ours_model.parameters(), ref_model.parameters(), strict=True):
        assert torch.equal(a, b)
    ours_state, ref_state = ours.state_dict(), ref.state_dict()
    assert ours_state["param_groups"][0].keys() == ref_state["param_groups"][0].keys()
    assert ours_state["param_groups"][0]["params"] == ref_state["param_groups"][0]["params"]
    for i, s in ref_state["state"].items():
        assert s.keys() == ours_state["state"][i].keys()
        for key in s:
            assert torch.equal(s[key], ours_state["state"][i][key]), key


def test_resume_from_state_dict_continues_bitwise():
    straight_model, resumed_model = _model(0), _model(0)
    straight = Adam(straight_model.parameters(), lr=1e-2)
    _train(straight_model, straight, 3)
    saved_params = {k: v.clone() for k, v in straight_model.state_dict().items()}
    saved_opt = copy.deepcopy(straight.state_dict())  # like torch's, it holds the live tensors
    _train(straight_model, straight, 4, seed=2)

    resumed_model.load_state_dict(saved_params)
    resumed = Adam(resumed_model.parameters(), lr=1e-2)
    resumed.load_state_dict(saved_opt)
    _train(resumed_model, resumed, 4, seed=2)
    for a, b in zip(straight_model.parameters(), resumed_model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_does_not_import_dynamo():
    code = ("import sys, torch\nfrom algorithms.blocks.adam import Adam\n"
            "m = torch.nn.Linear(3, 2); o = Adam(m.parameters(), lr=0.1)\n"
            "m(torch.ones(1, 3)).sum().backward(); torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)\n"
            "o.step(); o.zero_grad(); o.load_state_dict(o.state_dict())\n"
            "assert 'torch._dynamo' not in sys.modules, 'torch._dynamo was imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_agentwise_adam_equals_a_separate_adam_per_agent():
    """HAPPO/HATRPO step one agent's rows: same as torch.optim.Adam over that agent's own tensors, others untouched."""
    from algorithms.blocks.adam import AgentwiseAdam

    torch.manual_seed(0)
    weight, bias = torch.nn.Parameter(torch.randn(3, 4, 2)), torch.nn.Parameter(torch.randn(3, 2))
    initial = weight.detach().clone(), bias.detach().clone()
    separate = [[torch.nn.Parameter(weight[i].detach().clone()), torch.nn.Parameter(bias[i].detach().clone())]
                for i in range(3)]
    ours = AgentwiseAdam([weight, bias], n_agents=3, lr=0.05)
    theirs = [torch.optim.Adam(p, lr=0.05) for p in separate]
    x = torch.randn(5, 4)
    for agent in [1, 1, 2, 1]:  # agent 0 never steps; agent 1 thrice (its own step count)
        ours.zero_grad()
        ((x @ weight[agent] + bias[agent]) ** 2).sum().backward()
        ours.step(agent)
        w, b = separate[agent]
        theirs[agent].zero_grad()
        ((x @ w + b) ** 2).sum().backward()
        theirs[agent].step()
    for agent in range(3):
        assert torch.equal(weight[agent], separate[agent][0]) and torch.equal(bias[agent], separate[agent][1])
    assert torch.equal(weight[0], initial[0][0]) and torch.equal(bias[0], initial[1][0])
    assert ours.state[0]["step"].tolist() == [0.0, 3.0, 1.0]
