"""The built-in objectives: how a model is trained, one family per file (see :class:`vaetool.contracts.Objective`).

``elbo`` (β, warm-up, free bits) is the default. The historical training flags are shorthands for
objective options (:data:`SHORTHANDS`): ``--tc-weight 6`` is ``--objective tcvae --objective-opt
tc_weight=6``, ``--capacity 25`` is ``--objective capacity --objective-opt capacity=25``, and
``--beta``, ``--warmup``, ``--free-bits`` set the option of that name of whichever objective is chosen.
"""
from __future__ import annotations

from typing import Any

from vaetool.errors import VaetoolError

DEFAULT = "elbo"

#: Each historical flag, the objective option it sets, and the objective it chooses when none is named.
SHORTHANDS: dict[str, tuple[str, str | None]] = {
    "beta": ("beta", None),
    "warmup": ("warmup", None),
    "free_bits": ("free_bits", None),
    "tc_weight": ("tc_weight", "tcvae"),
    "capacity": ("capacity", "capacity"),
    "capacity_epochs": ("capacity_epochs", "capacity"),
}


def ramp(target: float, epochs: float, epochs_done: float) -> float:
    """``target`` reached linearly from 0 over ``epochs`` (fractional epochs done), then constant.

    The KL warm-up of Bowman et al. (CoNLL 2016) and the capacity schedule of Burgess et al. (2018).
    """
    if epochs <= 0:
        return target
    return target * min(1.0, epochs_done / epochs)


def choose(objective: str | None, options: dict[str, Any], shorthands: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The objective and its options from ``--objective``, ``--objective-opt`` and the shorthand flags.

    ``shorthands`` maps :data:`SHORTHANDS` keys to values, ``None`` for those not given. A shorthand
    that the chosen objective has no option for is refused by name, in one sentence.
    """
    from vaetool import registry

    given = {key: value for key, value in shorthands.items() if value is not None}
    implied = sorted({SHORTHANDS[key][1] for key in given if SHORTHANDS[key][1] is not None})
    if objective is None:
        if len(implied) > 1:
            flags = " and ".join(_flag(k) for k in given if SHORTHANDS[k][1] is not None)
            raise VaetoolError(f"{flags} are options of different objectives ({', '.join(implied)}); choose one.")
        objective = implied[0] if implied else DEFAULT
    known = registry.options_of(registry.get("objective", objective))
    options = dict(options)
    for key, value in given.items():
        option = SHORTHANDS[key][0]
        if option not in known:
            raise VaetoolError(f"{_flag(key)} does not apply to the {objective} objective; its options are: "
                               f"{', '.join(known) or 'none'}.")
        if options.get(option) is not None and options[option] != value:
            raise VaetoolError(f"{_flag(key)} {value:g} and --objective-opt {option}={options[option]} disagree; give one.")
        options[option] = value
    return objective, options


def recorded(config: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The objective a model was trained with and its options, from its config.

    Files written before objectives were plugins record the historical flags in their training
    settings instead; they are read as the shorthands they now are.
    """
    if "objective" in config:
        return config["objective"], dict(config.get("objective_options", {}))
    settings = config.get("training", {})
    shorthands = {key: settings.get(key) for key in SHORTHANDS}
    name = next((SHORTHANDS[k][1] for k, v in shorthands.items() if v is not None and SHORTHANDS[k][1]), DEFAULT)
    return name, {SHORTHANDS[k][0]: v for k, v in shorthands.items() if v is not None}


def _flag(key: str) -> str:
    return key.replace("_", "-")
