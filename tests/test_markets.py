"""Markets where decisions matter: liquidity dynamics, the oracle, the adaptive MPC."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import optimize

from conftest import Anticipating, RandomPolicy
from sb3_exec import dp, evaluate
from sb3_exec.analytic import ac_model
from sb3_exec.baselines import BASELINES, DP, Adaptive, Oracle, Policy
from sb3_exec.config import make_config
from sb3_exec.market import draw_market, volume_profile
from sb3_exec.planning import water_fill
from sb3_exec.rng import as_seeds


def _market(preset="liquidity", n=20_000, **kw):
    cfg = make_config(preset, **kw)
    return cfg, draw_market(cfg, as_seeds(np.arange(n)))


def test_volume_profile_averages_to_the_documented_volume():
    cfg, m = _market()
    prof = volume_profile(cfg)
    assert prof.mean() == pytest.approx(1.0) and prof[0] > 1.2 * prof[len(prof) // 2]  # U-shape
    per_slice = m.volume.mean(axis=0)
    se = m.volume.std(axis=0) / np.sqrt(len(m.volume))
    assert np.all(np.abs(per_slice - cfg.vol_mu * prof) < 4 * se)
    assert abs(m.volume.mean() - cfg.vol_mu) < 0.01 * cfg.vol_mu


def test_log_ar1_persistence_matches_its_parameter():
    cfg, m = _market()
    z = np.log(m.volume / (cfg.vol_mu * volume_profile(cfg)))
    r = np.corrcoef(z[:, 10], z[:, 11])[0, 1]
    assert abs(r - cfg.volume_phi) < 0.02
    y = np.log(m.half_spread)
    assert abs(np.corrcoef(y[:, 10], y[:, 11])[0, 1] - cfg.spread_phi) < 0.02


def test_spreads_positive_with_the_documented_mean():
    cfg, m = _market()
    assert (m.half_spread > 0).all()
    assert m.half_spread.mean() == pytest.approx(cfg.spread_bps * 1e-4 * cfg.p0, rel=0.02)


def test_sqrt_impact_cost():
    ev = evaluate(
        {"imm": "immediate"},
        dict(
            preset="liquidity",
            temp_impact="sqrt",
            sigma=0.0,
            volume_innov_sd=0.0,
            spread_innov_sd=0.0,
            max_participation=1.0,
        ),
        seeds=[0],
        trajectories=True,
    )
    s = ev.steps.iloc[0]
    cfg = ev.config
    hs = cfg.spread_bps * 1e-4 * cfg.p0
    expected = (hs + cfg.eta * cfg.p0 * np.sqrt(s.part)) * s.q_exec
    assert s.cost == pytest.approx(expected, rel=1e-12)


def test_water_fill_kkt_and_against_a_generic_solver():
    rng = np.random.default_rng(0)
    B, n = 50, 8
    a, b = rng.uniform(0, 1, (B, n)), rng.uniform(0.1, 1, (B, n))
    c = np.where(rng.uniform(size=(B, n)) < 0.5, rng.uniform(0, 1, (B, n)), 0.0)
    cap, total = rng.uniform(0.2, 1.5, (B, n)), rng.uniform(0.5, 4, B)
    q = water_fill(a, b, cap, total, c)
    feasible = cap.sum(1) > total
    np.testing.assert_allclose(q.sum(1)[feasible], total[feasible], rtol=1e-10)
    assert (q >= -1e-12).all() and (q <= cap + 1e-12).all()
    marginal = a + 2 * b * q + 1.5 * c * np.sqrt(q)
    for i in np.flatnonzero(feasible):
        inner = (q[i] > 1e-9) & (q[i] < cap[i] - 1e-9)
        nu = marginal[i][inner].mean()
        np.testing.assert_allclose(marginal[i][inner], nu, rtol=1e-6, atol=1e-9)
        assert (marginal[i][q[i] <= 1e-9] >= nu - 1e-7).all()
        assert (marginal[i][q[i] >= cap[i] - 1e-9] <= nu + 1e-7).all()
    for i in np.flatnonzero(feasible)[:5]:  # a generic solver finds nothing better

        def f(x, i=i):
            return float(np.sum(a[i] * x + b[i] * x**2 + c[i] * np.abs(x) ** 1.5))

        res = optimize.minimize(
            f,
            np.full(n, total[i] / n),
            bounds=list(zip(np.zeros(n), cap[i], strict=True)),
            constraints={"type": "eq", "fun": lambda x, i=i: x.sum() - total[i]},
            method="SLSQP",
        )
        assert f(q[i]) <= res.fun + 1e-9


class DarkFirst(Policy):
    """Posts everything in the dark venue and trades TWAP lit with what is left."""

    def act(self, cfg, market, state):
        return state.x / np.maximum(cfg.T - state.t, 1), state.x


class RandomDark(RandomPolicy):
    """Random lit multiples and random dark fractions, seeded."""

    def act(self, cfg, market, state):
        return super().act(cfg, market, state), self._rng.uniform(0, 1, len(state.x)) * state.x


@pytest.mark.parametrize("preset", ["liquidity", "lob"])
@pytest.mark.parametrize("side", ["sell", "buy"])
def test_the_oracle_is_never_beaten(preset, side):
    cfg = make_config(preset, side=side)
    policies = {name: cls() for name, cls in BASELINES.items() if cls().supports(cfg) is None}
    assert "dp" in policies  # the causal optimum too (a DP over the signal and the dark order on lob)
    if preset == "lob":  # any causal policy will do here: a coarse DP solves in seconds
        policies["dp"] = DP(
            dp.Grid(
                inventory=31,
                volume=5,
                spread=5,
                signal=5,
                quadrature=5,
                dark=6,
                bisection=20,
                dark_orders=(0.0, 1.0, 2.0),
            ),
            progress=False,
        )
    policies.update(random=RandomPolicy(3), random2=RandomPolicy(4), cheat=Anticipating())
    if preset == "lob":
        policies.update(dark=DarkFirst(), random_dark=RandomDark(5))
    ev = evaluate(policies, dict(preset=preset, side=side), seeds=range(1500))
    wide = ev.episodes.pivot(index="seed", columns="policy", values="schedule_objective_bps")
    for name in wide:
        assert (wide.oracle <= wide[name] + 1e-9).all(), name
    assert (wide.twap - wide.oracle).mean() > 5.0  # decisions matter on this preset


def test_oracle_and_adaptive_are_almgren_chriss_on_ac2000():
    cfg = make_config("ac2000")
    ev = evaluate({"ac": "ac", "oracle": Oracle(), "adaptive": Adaptive()}, cfg, seeds=range(200), trajectories=True)
    wide = ev.steps.pivot_table(index=["seed", "slice"], columns="policy", values="q_exec")
    np.testing.assert_allclose(wide.oracle, wide.ac, rtol=1e-9)
    np.testing.assert_allclose(wide.adaptive, wide.ac, rtol=1e-9)
    np.testing.assert_allclose(
        ev.episodes.schedule_objective_bps,
        ac_model(cfg).objective(ac_model(cfg).holdings()) / cfg.notional * 1e4,
        rtol=1e-9,
    )


def test_adaptive_is_the_oracle_when_liquidity_is_known():
    kw = dict(preset="liquidity", volume_innov_sd=0.0, spread_innov_sd=0.0)
    ev = evaluate({"oracle": Oracle(), "adaptive": Adaptive()}, kw, seeds=range(20))
    wide = ev.episodes.pivot(index="seed", columns="policy", values="schedule_objective_bps")
    np.testing.assert_allclose(wide.adaptive, wide.oracle, rtol=1e-9)


def test_adaptive_closes_part_of_the_gap_and_summary_reports_it():
    ev = evaluate(
        {"twap": "twap", "vwap": "vwap", "adaptive": Adaptive(), "oracle": Oracle()},
        dict(preset="liquidity"),
        seeds=range(2000),
    )
    s = ev.summary(n_resamples=300)
    assert 25 < s.loc["adaptive", "gap_closed_pct"] < 90
    assert (
        s.loc["adaptive", "gap_closed_pct_lo"]
        < s.loc["adaptive", "gap_closed_pct"]
        < s.loc["adaptive", "gap_closed_pct_hi"]
    )


def test_oracle_needs_additive_impact():
    with pytest.raises(ValueError, match="temp_impact"):
        evaluate({"oracle": Oracle()}, dict(preset="seed"), seeds=[0])


def test_participation_penalties_are_reward_terms_reported_apart():
    from sb3_exec import ExecutionEnv

    kw = dict(preset="liquidity", aggressiveness_penalty=4.0, participation_change_penalty=30.0)
    env = ExecutionEnv(**kw)
    env.reset(seed=3)
    rng = np.random.default_rng(0)
    parts, rewards = [], []
    while True:
        _, r, term, _, info = env.step(int(rng.integers(0, 12)))
        parts.append(info["part"])
        rewards.append(r)
        if term:
            break
    p = np.array(parts)
    expected = 4.0 * (p**2).sum() + 30.0 * (np.diff(p) ** 2).sum()
    assert info["penalty_bps"] == pytest.approx(expected, rel=1e-9) and expected > 0
    assert sum(rewards) == pytest.approx(-info["objective_bps"], rel=1e-9)
    assert info["objective_bps"] == pytest.approx(info["shortfall_bps"] + info["penalty_bps"], rel=1e-9)
    ev = evaluate({"twap": "twap", "oracle": Oracle()}, kw, seeds=range(10))
    assert (ev.episodes.penalty_bps > 0).all()
    wide = ev.episodes.pivot(index="seed", columns="policy", values="schedule_objective_bps")
    assert (wide.oracle < wide.twap).all()  # the coupled solve handles the penalties


SIGNAL = dict(preset="liquidity", signal_strength=0.1, signal_phi=0.7)


class SignalReactive(Policy):
    """Causal: sells faster when the observed order flow is negative (prices about to fall)."""

    def act(self, cfg, market, state):
        t = np.minimum(state.t, cfg.T - 1)
        s = market.signal[np.arange(len(t)), t]
        return np.where(s < 0, 2.0, 0.5) * state.x / np.maximum(cfg.T - state.t, 1)


def test_signal_predicts_the_move_with_its_documented_strength():
    cfg, m = _market(**{k: v for k, v in SIGNAL.items() if k != "preset"})
    slice_vol = cfg.p0 * cfg.sigma * np.sqrt(cfg.dt)
    # mid_known[t+1] - mid_known[t] is slice t's price move (the shock follows the trade here)
    moves = m.mid_known[:, 1:] - m.mid_known[:, :-1]
    slope = np.polyfit(m.signal[:, :-1].ravel(), moves.ravel() / slice_vol, 1)[0]
    assert slope == pytest.approx(cfg.signal_strength, abs=0.01)
    assert np.corrcoef(m.signal[:, 5], m.signal[:, 6])[0, 1] == pytest.approx(cfg.signal_phi, abs=0.02)
    assert np.corrcoef(m.signal.ravel(), m.imbalance.ravel())[0, 1] > 0.3
    # the schedule cost keeps the predictable drift: its mid moves by exactly the drift
    drift = np.diff(m.mid_sched, axis=1)
    np.testing.assert_allclose(drift, cfg.signal_strength * slice_vol * m.signal[:, :-1], atol=1e-9)


def test_signal_schedule_cost_unbiased_and_oracle_still_a_bound():
    policies = {
        "twap": "twap",
        "reactive": SignalReactive(),
        "adaptive": Adaptive(),
        "oracle": Oracle(),
        "cheat": Anticipating(),
    }
    ev = evaluate(policies, SIGNAL, seeds=range(4000))
    for name, g in ev.episodes.groupby("policy"):
        d = (g.shortfall_bps - g.schedule_cost_bps).to_numpy()
        se = d.std(ddof=1) / np.sqrt(len(d))
        if name == "cheat":
            assert d.mean() < -5 * se
        else:
            assert abs(d.mean()) <= 3 * se, name
    wide = ev.episodes.pivot(index="seed", columns="policy", values="schedule_objective_bps")
    for name in wide:
        assert (wide.oracle <= wide[name] + 1e-9).all(), name
    assert wide.adaptive.mean() < wide.twap.mean()  # the MPC uses the signal and the liquidity


def test_lob_features_in_the_observation():
    from sb3_exec import ExecutionEnv

    env = ExecutionEnv(**SIGNAL)
    obs, _ = env.reset(seed=5)
    assert obs.shape == (9,) and env.observation_space.shape == (9,)
    m = env.batch_view()[0]  # the episode's market
    assert obs[6] == pytest.approx(m.signal[0, 0], rel=1e-6)
    assert obs[7] == pytest.approx(m.imbalance[0, 0], rel=1e-6)
    assert obs[8] == pytest.approx(m.volume[0, 0] / env.cfg.vol_mu, rel=1e-6)  # slice 0 at the start
    obs, *_ = env.step(1)
    assert obs[6] == pytest.approx(m.signal[0, 1], rel=1e-6)
    assert obs[8] == pytest.approx(m.volume[0, 0] / env.cfg.vol_mu, rel=1e-6)  # the last slice's
    assert ExecutionEnv("liquidity").observation_space.shape == (6,)


DARK = dict(preset="liquidity", dark_share=0.1, dark_log_sd=1.0, dark_adverse_bps=1.0)


def test_dark_fills_never_exceed_the_order_or_the_dark_liquidity():
    from sb3_exec import ExecutionEnv
    from sb3_exec.dynamics import MARKET_ROW

    for mode in ("twap_multiple", "fraction"):
        env = ExecutionEnv(**DARK, action_mode=mode)
        assert env.action_space.shape == ((2,) if mode == "fraction" else ())
        rng = np.random.default_rng(1)
        for seed in range(30):
            env.reset(seed=seed)
            dark = env._path[MARKET_ROW.index("dark")]  # the episode's dark liquidity per slice
            t, x, done = 0, env.cfg.Q0, False
            while not done:
                a = (
                    rng.uniform(-1, 1, size=2).astype(np.float32)
                    if mode == "fraction"
                    else int(rng.integers(env.action_space.n))
                )
                _, _, done, _, info = env.step(a)
                assert -1e-9 <= info["dark_fill"] <= min(dark[t], x) + 1e-6
                assert info["q_exec"] + info["dark_fill"] <= x + 1e-6
                x, t = info["q_rem"], t + 1


def test_a_dark_fill_pays_the_mid_and_the_adverse_selection_only():
    from sb3_exec import ExecutionEnv

    env = ExecutionEnv(**DARK, sigma=0.0, action_mode="twap_multiple")
    env.reset(seed=2)
    n_dark = len(env.cfg.dark_levels)
    dark_liquidity = env.batch_view()[0].dark[0, 0]
    _, _, _, _, info = env.step(0 * n_dark + (n_dark - 1))  # no lit trade, everything posted dark
    assert info["q_exec"] == 0.0 and info["dark_fill"] == pytest.approx(min(dark_liquidity, 4e6))
    assert info["cost"] == pytest.approx(info["dark_fill"] * 1e-4 * 100.0, rel=1e-9)  # 1 bp, no spread


def test_policies_can_send_dark_orders():
    ev = evaluate({"twap": "twap", "dark": DarkFirst()}, DARK, seeds=range(500), trajectories=True)
    s = ev.summary(n_resamples=100)
    assert s.loc["dark", "diff_schedule_objective_bps"] < 0  # saving the spread pays here
    assert (ev.steps[ev.steps.policy == "twap"].dark_fill == 0).all()


def test_lob_preset_has_everything_on_and_the_mpc_uses_it():
    cfg = make_config("lob")
    assert cfg.dark_venue and cfg.lob_features and cfg.aggressiveness_penalty > 0
    assert cfg.volume_model == "log_ar1" and cfg.spread_model == "log_ar1"
    ev = evaluate({"twap": "twap", "adaptive": Adaptive(), "oracle": Oracle()}, cfg, seeds=range(1000))
    s = ev.summary(n_resamples=200)
    assert s.loc["twap", "schedule_objective_bps"] - s.loc["oracle", "schedule_objective_bps"] > 5
    assert 20 < s.loc["adaptive", "gap_closed_pct"] < 95
    assert (ev.episodes.loc[ev.episodes.policy == "twap", "penalty_bps"] > 0).all()


class _FixedPlan(Policy):
    """Trades a given schedule (one episode)."""

    def __init__(self, plan):
        self.plan = np.asarray(plan, dtype=float)

    def act(self, cfg, market, state):
        return self.plan[np.minimum(state.t, cfg.T - 1)]


@pytest.mark.parametrize(
    "coupling",
    [
        dict(participation_change_penalty=50.0),
        dict(risk_aversion=2e-8),
        dict(participation_change_penalty=20.0, risk_aversion=1e-8),
    ],
)
def test_the_convex_solve_where_slices_do_not_separate(coupling):
    """The oracle's coupled solve against a generic solver on the env's own schedule objective."""
    kw = dict(preset="liquidity", T=8, Q0=1e6, **coupling)
    cfg = make_config(**kw)
    for seed in range(2):
        oracle = evaluate({"oracle": Oracle()}, kw, seeds=[seed]).episodes.schedule_objective_bps[0]
        market = draw_market(cfg, as_seeds([seed]))
        cap = cfg.max_participation * market.volume[0]

        def f(x):  # x: the schedule as fractions of the order
            ev = evaluate({"p": _FixedPlan(x * cfg.Q0)}, kw, seeds=[seed])  # noqa: B023 (minimised within this iteration)
            return float(ev.episodes.schedule_objective_bps[0])

        plan = evaluate({"oracle": Oracle()}, kw, seeds=[seed], trajectories=True).steps.q_exec
        bounds = list(zip(np.zeros(cfg.T), cap / cfg.Q0, strict=True))
        for x0 in (np.minimum(np.full(cfg.T, 1.0 / cfg.T), cap / cfg.Q0), plan.to_numpy() / cfg.Q0):
            res = optimize.minimize(
                f,
                x0,
                bounds=bounds,
                method="SLSQP",
                constraints={"type": "ineq", "fun": lambda x: 1.0 - x.sum()},
                options={"maxiter": 500, "ftol": 1e-12},
            )
            assert oracle <= res.fun + 1e-6  # nothing the generic solver finds beats the oracle
            assert res.fun <= oracle + 0.02  # and from TWAP it reaches the oracle's value
