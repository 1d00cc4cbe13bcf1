"""Agents defined outside the registry: an importable SB3-style class, or a factory function, with
the action interface it acts in; built, trained, saved and evaluated like the registered agents.

An experiment file (``experiments.compare``) defines them in its ``agents`` list, beside the
names of registered agents::

    agents:
      - ppo                               # a registered agent
      - name: tqc
        algo: sb3_contrib:TQC             # a class with SB3's constructor, learn/predict/save/load
        action_mode: fraction             # an action interface of the env (config.ACTION_MODES)
        n_timesteps: 30000
        hyperparams: {learning_rate: 1.0e-3, policy_kwargs: {net_arch: [64, 64]}}
      - name: mine
        factory: my_package.agents:make   # a function (env, seed, **hyperparams) -> model
        action_mode: twap_multiple

``split_agents`` checks such a list (a one-line ``ValueError`` naming the entry and the field:
``agents[1] 'tqc': algo: cannot import 'sb3_contrib:TQX' ...``) and gives ``AgentDef``\\ s;
``AgentDef.check_build`` builds one on a preset with zero training steps, so an algorithm whose
action spaces do not include the interface's fails before anything trains. ``resolve`` puts a
registered name (``Registered``) and a definition behind one small interface, which
``sb3_exec.train`` and ``experiments.compare`` use.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import gymnasium as gym
from stable_baselines3.common.vec_env import VecEnv, VecMonitor

from sb3_exec import agents
from sb3_exec.actions import BOX_MODES
from sb3_exec.baselines import BASELINES
from sb3_exec.config import ACTION_MODES, make_config
from sb3_exec.wrappers import make_vec_env

FIELDS = ("name", "algo", "factory", "action_mode", "n_timesteps", "n_envs", "hyperparams", "env_kwargs", "description")
NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]*\Z")  # it names run folders (<name>_s<seed>)
MODEL_METHODS = ("learn", "predict", "save")  # and a classmethod load: compare reloads stored runs


def import_object(path: str) -> Any:
    """The object named by ``"module:name"`` (or ``"module.name"``); ``ImportError`` saying why
    not, with the nearest name the module has."""
    module, sep, attr = path.partition(":")
    if not sep:
        module, _, attr = path.rpartition(".")
    if not module or not attr:
        raise ImportError("write it as 'module:name'")
    try:
        obj = importlib.import_module(module)
    except Exception as exc:  # a missing module, or one that fails on import: say which
        raise ImportError(f"{type(exc).__name__}: {exc}") from exc
    for part in attr.split("."):
        if not hasattr(obj, part):
            near = difflib.get_close_matches(part, [n for n in dir(obj) if not n.startswith("_")], n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise ImportError(f"{getattr(obj, '__name__', module)!r} has no attribute {part!r}{hint}")
        obj = getattr(obj, part)
    return obj


def accepted_arguments(target: Any, skip: int = 0) -> set[str] | None:
    """Keyword arguments a function, or a class's constructor, takes (following ``**kwargs`` up
    the class's bases, as an SB3 subclass passes them on); ``skip`` leading parameters are not
    counted (a factory's ``env, seed``); None where anything goes (``**kwargs`` all the way)."""
    chain = (
        [vars(c)["__init__"] for c in target.__mro__ if "__init__" in vars(c)] if inspect.isclass(target) else [target]
    )
    names: set[str] = set()
    for i, fn in enumerate(chain):
        params = list(inspect.signature(fn).parameters.values())
        if inspect.isclass(target):
            params = [p for p in params if p.name not in ("self", "env")]
        elif i == 0:
            params = params[skip:]
        names |= {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            return names
    return None


@dataclass(frozen=True)
class AgentDef:
    """An agent defined by its class or factory and the action interface it acts in.

    :param name: its name in the tables and run folders (a letter, then letters, digits, ``_.-``)
    :param action_mode: the action interface it acts in (``config.ACTION_MODES``)
    :param algo: ``"module:Class"``: a class with SB3's constructor ``(policy, env, seed=..., **kw)``,
        ``learn``, ``predict``, ``save`` and ``load`` (any SB3 or sb3-contrib algorithm, a subclass)
    :param factory: ``"module:function"``: ``function(env, seed, **hyperparams) -> model``, a model
        as above; give ``algo`` or ``factory``
    :param n_timesteps: training budget in env steps (a comparison's ``timesteps`` overrides it;
        none: 30,000)
    :param n_envs: parallel episodes of the training VecEnv
    :param hyperparams: keyword arguments of the class (``policy`` too, default ``MlpPolicy``;
        ``policy_kwargs.activation_fn`` may name ``tanh``, ``relu``, ``elu``) or of the factory
    :param env_kwargs: further env options it trains with (``reward: schedule``, interface
        options such as ``twap_multiples`` or ``residual_base``)
    :param description: free text for the report
    :param where: how errors name the entry (``agents[1] 'tqc'``); not part of the definition
    """

    name: str
    action_mode: str
    algo: str | None = None
    factory: str | None = None
    n_timesteps: int | None = None
    n_envs: int = 1
    hyperparams: Mapping[str, Any] = field(default_factory=dict)
    env_kwargs: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    where: str = field(default="", compare=False)

    @property
    def label(self) -> str:
        """How messages name the entry."""
        return self.where or f"agent {self.name!r}"

    @property
    def path(self) -> str:
        """The class or factory path."""
        return str(self.algo or self.factory)

    def error(self, name: str, message: str) -> ValueError:
        """A one-line error naming the entry and the field."""
        return ValueError(f"{self.label}: {name}: {' '.join(message.split())}")

    def as_dict(self) -> dict[str, Any]:
        """The definition (what an experiment file says), without ``where``."""
        return {k: v for k, v in asdict(self).items() if k != "where"}

    def identity(self) -> dict[str, Any]:
        """What determines the trained model: the definition less its description."""
        return {k: v for k, v in self.as_dict().items() if k != "description"}

    def target(self) -> Any:
        """The imported class or factory."""
        return import_object(self.path)

    def params(self, preset: str = "default") -> dict[str, Any]:
        """Its hyperparameters in the form of a registered agent's YAML entry (``n_timesteps``,
        ``n_envs`` and ``env_kwargs`` beside the arguments); the same on every preset."""
        meta = {"n_timesteps": self.n_timesteps, "n_envs": self.n_envs, "env_kwargs": dict(self.env_kwargs)}
        return {**{k: v for k, v in meta.items() if v is not None}, **self.hyperparams}

    def env_kwargs_for(self, preset: str, **overrides: Any) -> dict[str, Any]:
        """Env options it trains with on ``preset``: its interface and ``env_kwargs``, validated."""
        kwargs = {"preset": preset, "action_mode": self.action_mode, **self.env_kwargs, **overrides}
        try:
            make_config(**kwargs)
        except ValueError as exc:
            raise self.error(
                "env_kwargs" if self.env_kwargs else "action_mode", f"on preset {preset!r}: {exc}"
            ) from None
        return kwargs

    def make_env(self, preset: str, seed: int = 0, n_envs: int | None = None, **overrides: Any) -> VecEnv:
        """Its training env on ``preset``: the batched env (``n_envs``), under ``VecMonitor``, seeded."""
        env = VecMonitor(make_vec_env(n_envs or self.n_envs, **self.env_kwargs_for(preset, **overrides)))
        env.seed(seed)
        return env

    def check_hyperparams(self, params: Mapping[str, Any]) -> None:
        """Refuse keys the class or factory does not take, naming the nearest valid one."""
        target = self.target()
        who = getattr(target, "__name__", self.path)
        for key in params:
            if key == "seed" or (key == "env" and self.algo):
                raise self.error(
                    "hyperparams", f"{key!r} is set by each run (the training seed, the training env); leave it out"
                )
            if key in agents.META_KEYS:
                raise self.error(
                    "hyperparams",
                    f"{key!r} is not an argument of {who}; it is a field of "
                    f"the entry: write '{key}:' beside 'hyperparams:'",
                )
        accepted = accepted_arguments(target, skip=0 if self.algo else 2)
        if accepted is None:
            return
        for key in params:
            if key not in accepted:
                near = difflib.get_close_matches(key, sorted(accepted), n=1)
                hint = f"did you mean {near[0]!r}?" if near else f"{who} takes {sorted(accepted)}"
                raise self.error("hyperparams", f"{key!r} is not an argument of {who}; {hint}")

    def make(
        self,
        env: gym.Env | VecEnv,
        seed: int = 0,
        preset: str | None = None,
        tensorboard_log: str | None = None,
        verbose: int | None = None,
        **overrides: Any,
    ) -> Any:
        """Build the model on ``env`` (SB3's ``seed``); ``overrides`` replace ``hyperparams``.
        The interface travels with the model (``agents.carry_interface``), as for a registered one."""
        self.check_hyperparams(overrides)
        kwargs = agents._algo_kwargs({**self.hyperparams, **overrides})
        target = self.target()
        if self.algo:
            model = target(kwargs.pop("policy", "MlpPolicy"), env, seed=seed, **kwargs)
        else:
            model = target(env, seed, **kwargs)
        for attr, value in (("tensorboard_log", tensorboard_log), ("verbose", verbose)):
            if value is not None and attr not in kwargs and hasattr(model, attr):
                setattr(model, attr, value)  # what SB3's learn reads when it configures its logger
        agents.carry_interface(model, env)
        return model

    def check_build(self, preset: str, env_overrides: Mapping[str, Any] | None = None, **overrides: Any) -> None:
        """Build it on ``preset``'s training env with zero training steps: a class that cannot
        act in the interface's action space, a hyperparameter it refuses, or a factory that fails
        or returns something without ``learn``/``predict``/``save``/``load`` fails now."""
        self.check_hyperparams(overrides)
        env = self.make_env(preset, **(env_overrides or {}))
        source = "algo" if self.algo else "factory"
        try:
            try:
                model = self.make(env, preset=preset, **overrides)
            except Exception as exc:
                reason = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
                if "action space" in reason.lower():
                    raise self._space_error(env.action_space, preset, reason) from exc
                raise self.error(
                    "hyperparams" if self.algo else "factory",
                    f"building {self.path} on preset {preset!r} failed: {reason}",
                ) from exc
            missing = [m for m in MODEL_METHODS if not callable(getattr(model, m, None))]
            missing += [] if callable(getattr(type(model), "load", None)) else ["load"]
            if missing:
                raise self.error(
                    source,
                    f"{self.path} built a {type(model).__name__}, which has no "
                    f"{', '.join(missing)}: compare trains, saves and reloads it",
                )
            space = getattr(model, "action_space", None)
            if space is not None and space != env.action_space:
                raise self._space_error(env.action_space, preset, f"the model acts in {space}")
        finally:
            env.close()

    def _space_error(self, space: gym.Space, preset: str, reason: str) -> ValueError:
        box = isinstance(space, gym.spaces.Box)
        other = [m for m in ACTION_MODES if (m in BOX_MODES) != box]
        supported = re.findall(r"<class '[\w.]*?(\w+)'>", reason)  # SB3 names the spaces it supports
        why = f"it supports {', '.join(supported)} spaces only" if supported else reason
        return self.error(
            "action_mode",
            f"{self.path} cannot act in {space}, the space of "
            f"{self.action_mode!r} on preset {preset!r} ({why}); the "
            f"{'discrete' if box else 'box'} interfaces are {other}",
        )


@dataclass(frozen=True)
class Registered:
    """A registered agent (``agents.AGENTS``) behind the interface of ``AgentDef``."""

    name: str

    def identity(self) -> dict[str, Any] | None:
        """None: nothing beyond its name (the registry and its YAML define it)."""
        return None

    def params(self, preset: str = "default") -> dict[str, Any]:
        """Its YAML entry for ``preset`` (``agents.hyperparams``)."""
        return agents.hyperparams(self.name, preset)

    def env_kwargs_for(self, preset: str, **overrides: Any) -> dict[str, Any]:
        """``agents.env_kwargs_for``."""
        return agents.env_kwargs_for(self.name, preset, **overrides)

    def make_env(self, preset: str, seed: int = 0, n_envs: int | None = None, **overrides: Any) -> VecEnv:
        """``agents.make_env``."""
        return agents.make_env(self.name, preset, seed, n_envs, **overrides)

    def check_hyperparams(self, params: Mapping[str, Any]) -> None:
        """``agents.check_hyperparams``."""
        agents.check_hyperparams(self.name, dict(params))

    def make(self, env: gym.Env | VecEnv, seed: int = 0, preset: str | None = None, **overrides: Any) -> Any:
        """``agents.make``."""
        return agents.make(self.name, env, seed=seed, preset=preset, **overrides)


def resolve(agent: str | AgentDef | Registered) -> AgentDef | Registered:
    """A definition as it is, or a registered agent's name (checked) as ``Registered``."""
    if isinstance(agent, (AgentDef, Registered)):
        return agent
    if agent not in agents.AGENTS:
        raise ValueError(f"agent: unknown agent {agent!r}; choose one of {sorted(agents.AGENTS)}")
    return Registered(agent)


def _field_error(where: str, name: str, message: str) -> ValueError:
    return ValueError(f"{where}: {name}: {message}")


def parse(
    entry: Any, where: str, preset: str | None = None, env_overrides: Mapping[str, Any] | None = None
) -> AgentDef:
    """One entry of an ``agents`` list that defines an agent, checked: its fields, its name, the
    class or factory (imported), the interface, the hyperparameters' names and, given a
    ``preset``, the env options on it. ``where`` names the entry in errors (``agents[1]``)."""
    if not isinstance(entry, Mapping):  # a ValueError: compare reports those in one line
        raise ValueError(
            f"{where}: an agent is a registered name or a mapping with name, "
            f"action_mode and algo or factory; got {entry!r}"
        )
    name = entry.get("name")
    if not isinstance(name, str) or not NAME.match(name):
        got = "missing" if name is None else f"{name!r} is not a name (a letter, then letters, digits, _.-)"
        raise _field_error(where, "name", f"{got}; every defined agent needs one")
    label = f"{where} {name!r}"
    for key in entry:
        if key not in FIELDS:
            near = difflib.get_close_matches(str(key), FIELDS, n=1)
            hint = f"did you mean {near[0]!r}?" if near else f"the fields are {list(FIELDS)}"
            raise _field_error(label, str(key), f"not a field of an agent definition; {hint}")
    if name in agents.AGENTS:
        raise _field_error(
            label,
            "name",
            f"{name!r} is a registered agent ({agents.AGENTS[name].description}); "
            f"give yours another name, or list the registered one by its name",
        )
    if name in BASELINES:
        raise _field_error(label, "name", f"{name!r} is a baseline; give your agent another name")
    sources = [k for k in ("algo", "factory") if entry.get(k) is not None]
    if len(sources) != 1:
        both = "give algo or factory, not both" if sources else "missing: give algo or factory"
        raise _field_error(
            label,
            "algo",
            f"{both} (algo: a class, 'module:Class'; factory: a function "
            f"(env, seed, **hyperparams) -> model, 'module:function')",
        )
    source = sources[0]
    mode = entry.get("action_mode")
    if mode not in ACTION_MODES:
        near = difflib.get_close_matches(str(mode), ACTION_MODES, n=1) if mode is not None else []
        got = (
            "missing"
            if mode is None
            else f"unknown action mode {mode!r}" + (f" (did you mean {near[0]!r}?)" if near else "")
        )
        raise _field_error(label, "action_mode", f"{got}; choose one of {list(ACTION_MODES)}")
    for key, low in (("n_timesteps", 1), ("n_envs", 1)):
        value = entry.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < low):
            raise _field_error(label, key, f"must be an integer >= {low}, got {value!r}")
    for key in ("hyperparams", "env_kwargs"):
        if not isinstance(entry.get(key) or {}, Mapping):
            raise _field_error(label, key, f"must be a mapping, got {entry[key]!r}")
    if "action_mode" in (entry.get("env_kwargs") or {}):
        raise _field_error(label, "env_kwargs", "action_mode is the entry's own field; set it there")
    path = entry[source]
    if not isinstance(path, str):
        raise _field_error(label, source, f"a path 'module:name', got {path!r}")
    try:
        target = import_object(path)
    except ImportError as exc:
        raise _field_error(label, source, f"cannot import {path!r} ({exc})") from None
    if source == "algo" and not (inspect.isclass(target) and all(hasattr(target, m) for m in (*MODEL_METHODS, "load"))):
        raise _field_error(
            label,
            "algo",
            f"{path!r} is not an algorithm class (a class with SB3's learn, predict, "
            f"save and load); a function that builds a model is a factory",
        )
    if source == "factory" and not callable(target):
        raise _field_error(label, "factory", f"{path!r} is not callable; give a function (env, seed, **hyperparams)")
    defn = AgentDef(
        name=name,
        action_mode=mode,
        algo=entry.get("algo"),
        factory=entry.get("factory"),
        n_timesteps=entry.get("n_timesteps"),
        n_envs=entry.get("n_envs") or 1,
        hyperparams=dict(entry.get("hyperparams") or {}),
        env_kwargs=dict(entry.get("env_kwargs") or {}),
        description=str(entry.get("description") or ""),
        where=label,
    )
    defn.check_hyperparams(defn.hyperparams)
    if source == "factory":
        try:
            inspect.signature(target).bind(None, 0, **defn.hyperparams)
        except TypeError as exc:
            raise defn.error("factory", f"{path} cannot be called as (env, seed, **hyperparams): {exc}") from None
    if preset is not None:
        defn.env_kwargs_for(preset, **(env_overrides or {}))
    return defn


def split_agents(
    entries: Any, key: str = "agents", preset: str | None = None, env_overrides: Mapping[str, Any] | None = None
) -> tuple[list[str], list[AgentDef]]:
    """The names an ``agents`` list selects, in order, and the agents it defines (each checked,
    on ``preset`` if given: ``parse``); a name defined twice is refused. Strings are names of
    registered or defined agents (``experiments.compare`` checks them)."""
    if not isinstance(entries, Sequence) or isinstance(entries, str):
        raise ValueError(f"{key}: a list of agent names and definitions, got {entries!r}")
    names: list[str] = []
    defs: dict[str, AgentDef] = {}
    for i, entry in enumerate(entries):
        if isinstance(entry, str):
            names.append(entry)
            continue
        defn = parse(entry, f"{key}[{i}]", preset, env_overrides)
        if defn.name in defs:
            raise defn.error("name", f"{defn.name!r} is defined twice ({defs[defn.name].where} too)")
        defs[defn.name] = defn
        names.append(defn.name)
    return names, list(defs.values())


def comparison_agents(
    entries: Any, definitions: Any = (), preset: str | None = None, env_overrides: Mapping[str, Any] | None = None
) -> tuple[list[str], dict[str, AgentDef]]:
    """The agents of a comparison: the names ``entries`` (an ``agents`` list) selects, in order,
    and every agent defined there or in ``definitions`` (a list of definitions; one of the same
    name in ``entries`` wins), checked on ``preset``. Unknown and repeated names are refused."""
    names, defs = split_agents(entries, "agents", preset, env_overrides)
    defined = {d.name: d for d in split_agents(definitions, "agent_definitions", preset, env_overrides)[1]}
    defined.update({d.name: d for d in defs})
    for name in names:
        if name not in agents.AGENTS and name not in defined:
            mine = f"; defined here: {sorted(defined)}" if defined else ""
            raise ValueError(
                f"agents: unknown agent {name!r}; choose from the registered {sorted(agents.AGENTS)} "
                f"or define it (README: Compare your own agent){mine}"
            )
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"agents: listed twice: {repeated}")
    return names, defined


def definitions_in(entries: Any) -> list[Mapping[str, Any]]:
    """The definitions (mappings) of an ``agents`` list, unchecked; none for anything else."""
    if not isinstance(entries, Sequence) or isinstance(entries, str):
        return []
    return [e for e in entries if isinstance(e, Mapping)]


__all__ = [
    "FIELDS",
    "AgentDef",
    "Registered",
    "accepted_arguments",
    "comparison_agents",
    "definitions_in",
    "import_object",
    "parse",
    "resolve",
    "split_agents",
]
