"""A/B experiments: definitions, deterministic bucketing, and the statistics of their metrics.

Pure code (no Kafka, no Faust): the worker, the CLI, the benchmark and the
tests all call these functions.

Definitions
-----------
An experiment (``[experiments.NAME]`` in the config, or the JSON record on
the control topic) names its variants in order, which one is the control, the
surfaces it applies to and its guard. A variant may change, for its users:

* ``recipe``: surface weights laid over the configured ones (the
  ``load_surfaces`` syntax, ``{"home": {"thompson": 0}}``);
* ``personalised = false``: "no personalisation", the list is built as for a
  user never seen (popularity): the usual control;
* ``model_version``: serve this model version instead of the live one;
* ``ranker_weights``: engagement type -> weight for the second pass (the seam
  the learned ranker plugs into; recorded on every list);
* ``delay_ms``: an added delay per list, for drills of the guard.

Bucketing
---------
A user's point ``u = H(salt, user) in [0, 1)`` (BLAKE2b, 64 bits) never
changes. ``[0, 1)`` is cut into one *lane* per variant, in declaration order,
of width ``max_share`` (default ``1 / variants``), fixed when the experiment
starts. A variant's users are those whose point lies in the first ``share``
of its lane; the rest of every lane is exempt. So raising a share (a ramp)
only moves users from exempt into that variant, and no user ever moves from
one variant to another while the experiment runs (stopping a variant serves
its users the control, and says so).

>>> e = Experiment.from_definition("home-test", {
...     "variants": {"control": {"share": 0.3, "personalised": False},
...                  "treatment": {"share": 0.3}}})
>>> [v.name for v in e.variants], e.control, [v.lane for v in e.variants]
(['control', 'treatment'], 'control', [(0.0, 0.5), (0.5, 1.0)])
>>> e.variant_of("some-user") in (None, "control", "treatment")
True

Statistics
----------
Metrics are ratios of per-user sums (clicks / impressions, ...) while users
are what is randomised, so impressions of one user are not independent. The
standard error of a ratio ``R = sum(y) / sum(x)`` over users is the delta
method's (Deng, Knoblich & Lu, "Applying the Delta Method in Metric
Analytics", KDD 2018): ``Var(R) = sum((y_u - R x_u)^2) / sum(x)^2 * n/(n-1)``,
computed from running sums ``n, Sx, Sy, Sxx, Sxy, Syy`` that the stream keeps.
Variants are compared by a two-sided z-test on the difference of the ratios
(independent groups, normal approximation: fine at the user counts an online
test has; a plain binomial test would understate the variance).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

#: Engagement types a ranker weight may name.
ENGAGEMENTS = ("click", "favorite", "cart", "purchase")
#: The default surfaces an experiment applies to.
ALL_SURFACES = ("home", "item", "cart")
#: z for two-sided 95% intervals.
Z95 = 1.959963984540054


class ExperimentError(ValueError):
    """A definition, record or command that cannot be used; the message names the field."""


@dataclass(frozen=True)
class Guard:
    """When a variant is stopped: its error rate or p95 latency over the last requests.

    Parameters
    ----------
    max_error_rate
        Share of failed requests (0 to 1) above which the variant stops.
    max_p95_ms
        95th-percentile request latency (ms) above which the variant stops.
    min_requests
        Requests of the variant seen before the guard judges.
    window
        The guard judges the variant's last ``window`` requests.
    """

    max_error_rate: float = 0.05
    max_p95_ms: float = 1000.0
    min_requests: int = 50
    window: int = 200

    def as_dict(self) -> dict[str, Any]:
        return {
            "max_error_rate": self.max_error_rate,
            "max_p95_ms": self.max_p95_ms,
            "min_requests": self.min_requests,
            "window": self.window,
        }


@dataclass(frozen=True)
class Variant:
    """One arm: its traffic share and what it changes (see the module docstring)."""

    name: str
    share: float
    lane: tuple[float, float]
    recipe: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    personalised: bool = True
    model_version: str | None = None
    ranker_weights: Mapping[str, float] | None = None
    delay_ms: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "share": self.share,
            "max_share": self.lane[1] - self.lane[0],
        }
        if self.recipe:
            out["recipe"] = {s: dict(w) for s, w in self.recipe.items()}
        if not self.personalised:
            out["personalised"] = False
        if self.model_version is not None:
            out["model_version"] = self.model_version
        if self.ranker_weights is not None:
            out["ranker_weights"] = dict(self.ranker_weights)
        if self.delay_ms:
            out["delay_ms"] = self.delay_ms
        return out


def bucket_point(salt: str, user_id: str) -> float:
    """The user's fixed point in ``[0, 1)`` for an experiment salted ``salt``.

    >>> bucket_point("a", "u1") == bucket_point("a", "u1") != bucket_point("b", "u1")
    True
    """
    digest = hashlib.blake2b(
        user_id.encode("utf-8", "surrogatepass"),
        digest_size=8,
        key=salt.encode("utf-8", "surrogatepass")[:64],
    ).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def _number(value: Any, where: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ExperimentError(f"{where}: must be a number from {low:g} to {high:g}, got {value!r}")
    if not low <= value <= high:
        raise ExperimentError(f"{where}: must be from {low:g} to {high:g}, got {value!r}")
    return float(value)


def _weights(value: Any, where: str, names: Sequence[str] | None) -> dict[str, float]:
    if not isinstance(value, Mapping):
        raise ExperimentError(f"{where}: must be a table of name = weight")
    out = {}
    for key, weight in value.items():
        if names is not None and key not in names:
            raise ExperimentError(
                f"{where}.{key}: unknown engagement type; expected one of {', '.join(names)}"
            )
        out[str(key)] = _number(weight, f"{where}.{key}", 0.0, 1e6)
    return out


def _variant(name: str, raw: Any, lane: tuple[float, float], where: str) -> Variant:
    if not isinstance(raw, Mapping):
        raise ExperimentError(f"{where}: must be a table")
    known = {
        "name",
        "share",
        "max_share",
        "recipe",
        "personalised",
        "model_version",
        "ranker_weights",
        "delay_ms",
    }
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ExperimentError(
            f"{where}.{unknown[0]}: unknown key; expected one of {', '.join(sorted(known))}"
        )
    share = _number(raw.get("share", 0.0), f"{where}.share", 0.0, 1.0)
    if share > lane[1] - lane[0] + 1e-12:
        raise ExperimentError(
            f"{where}.share: {share:g} is over the variant's max_share {lane[1] - lane[0]:g}"
        )
    recipe = raw.get("recipe") or {}
    if not isinstance(recipe, Mapping):
        raise ExperimentError(f"{where}.recipe: must be a table of surface = {{source = weight}}")
    recipe = {str(s): _weights(w, f"{where}.recipe.{s}", None) for s, w in recipe.items()}
    personalised = raw.get("personalised", True)
    if not isinstance(personalised, bool):
        raise ExperimentError(f"{where}.personalised: must be true or false")
    version = raw.get("model_version")
    if version is not None and (not isinstance(version, str) or not version):
        raise ExperimentError(f"{where}.model_version: must be a version name")
    ranker = raw.get("ranker_weights")
    if ranker is not None:
        ranker = _weights(ranker, f"{where}.ranker_weights", ENGAGEMENTS)
    delay = _number(raw.get("delay_ms", 0.0), f"{where}.delay_ms", 0.0, 60_000.0)
    return Variant(name, share, lane, recipe, personalised, version, ranker, delay)


def _guard(raw: Any, where: str) -> Guard:
    if raw is None:
        return Guard()
    if not isinstance(raw, Mapping):
        raise ExperimentError(f"{where}: must be a table")
    known = set(Guard().as_dict())
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ExperimentError(
            f"{where}.{unknown[0]}: unknown key; expected one of {', '.join(sorted(known))}"
        )
    base = Guard()
    return Guard(
        _number(raw.get("max_error_rate", base.max_error_rate), f"{where}.max_error_rate", 0, 1),
        _number(raw.get("max_p95_ms", base.max_p95_ms), f"{where}.max_p95_ms", 0, 3.6e6),
        int(_number(raw.get("min_requests", base.min_requests), f"{where}.min_requests", 1, 1e9)),
        int(_number(raw.get("window", base.window), f"{where}.window", 1, 1e6)),
    )


@dataclass(frozen=True)
class Experiment:
    """A defined experiment and, once started, its run (see the module docstring).

    ``status`` is ``defined`` (only in config), ``running`` or ``stopped``;
    ``run`` names one start (a restart is a new run: new metrics);
    ``stopped_variants`` maps a variant stopped by the guard or an operator to
    why (its users get the control from then on).
    """

    name: str
    variants: tuple[Variant, ...]
    control: str
    surfaces: tuple[str, ...] = ALL_SURFACES
    salt: str = ""
    guard: Guard = field(default_factory=Guard)
    status: str = "defined"
    run: str = ""
    revision: int = 0
    started_at: float | None = None
    updated_at: float | None = None
    stopped_variants: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    # -- reading ---------------------------------------------------------------------
    @classmethod
    def from_definition(cls, name: str, raw: Any, where: str | None = None) -> Experiment:
        """Parse a definition (a config table or a record); raise :class:`ExperimentError`.

        ``variants`` is a table (name -> variant, in order) or a list of
        variants with a ``name`` each.
        """
        where = where or f"experiments.{name}"
        if not isinstance(name, str) or not name or len(name) > 100 or "/" in name:
            raise ExperimentError(f"{where}: a name must be 1-100 characters without '/'")
        if not isinstance(raw, Mapping):
            raise ExperimentError(f"{where}: must be a table")
        known = {
            "variants",
            "control",
            "surfaces",
            "salt",
            "guard",
            "status",
            "run",
            "revision",
            "started_at",
            "updated_at",
            "stopped_variants",
            "name",
        }
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ExperimentError(
                f"{where}.{unknown[0]}: unknown key; expected one of {', '.join(sorted(known))}"
            )
        variants_raw = raw.get("variants")
        if isinstance(variants_raw, Mapping):
            items = [(str(k), v) for k, v in variants_raw.items()]
        elif isinstance(variants_raw, list):
            items = []
            for i, v in enumerate(variants_raw):
                if not isinstance(v, Mapping) or not isinstance(v.get("name"), str):
                    raise ExperimentError(f"{where}.variants[{i}]: needs a name")
                items.append((v["name"], v))
        else:
            raise ExperimentError(f"{where}.variants: a table of at least two variants")
        if len(items) < 2:
            raise ExperimentError(
                f"{where}.variants: needs at least two variants, got {len(items)}"
            )
        if len({n for n, _ in items}) != len(items):
            raise ExperimentError(f"{where}.variants: variant names must differ")
        caps = []
        for n, v in items:
            cap = v.get("max_share") if isinstance(v, Mapping) else None
            caps.append(
                1.0 / len(items)
                if cap is None
                else _number(cap, f"{where}.variants.{n}.max_share", 0.0, 1.0)
            )
        if sum(caps) > 1.0 + 1e-9:
            raise ExperimentError(f"{where}.variants: max_share values add up to {sum(caps):g} > 1")
        variants, start = [], 0.0
        for (n, v), cap in zip(items, caps, strict=True):
            variants.append(_variant(n, v, (start, start + cap), f"{where}.variants.{n}"))
            start += cap
        control = raw.get("control", items[0][0])
        if control not in {n for n, _ in items}:
            raise ExperimentError(f"{where}.control: {control!r} is not one of its variants")
        surfaces = raw.get("surfaces", list(ALL_SURFACES))
        if (
            not isinstance(surfaces, list)
            or not surfaces
            or not all(isinstance(s, str) and s for s in surfaces)
        ):
            raise ExperimentError(f"{where}.surfaces: must be a list of surface names")
        salt = raw.get("salt", name)
        if not isinstance(salt, str) or not salt:
            raise ExperimentError(f"{where}.salt: must be a non-empty string")
        status = raw.get("status", "defined")
        if status not in ("defined", "running", "stopped"):
            raise ExperimentError(f"{where}.status: must be defined, running or stopped")
        stopped = raw.get("stopped_variants") or {}
        if not isinstance(stopped, Mapping) or not set(stopped) <= {n for n, _ in items}:
            raise ExperimentError(f"{where}.stopped_variants: must name variants")
        return cls(
            name=name,
            variants=tuple(variants),
            control=control,
            surfaces=tuple(dict.fromkeys(surfaces)),
            salt=salt,
            guard=_guard(raw.get("guard"), f"{where}.guard"),
            status=status,
            run=str(raw.get("run", "")),
            revision=int(raw.get("revision", 0)),
            started_at=raw.get("started_at"),
            updated_at=raw.get("updated_at"),
            stopped_variants={k: dict(v) for k, v in stopped.items()},
        )

    def as_record(self) -> dict[str, Any]:
        """The JSON record of the control topic (self-contained: workers need nothing else)."""
        return {
            "name": self.name,
            "status": self.status,
            "run": self.run,
            "revision": self.revision,
            "started_at": self.started_at,
            "updated_at": self.updated_at,
            "control": self.control,
            "surfaces": list(self.surfaces),
            "salt": self.salt,
            "guard": self.guard.as_dict(),
            "variants": [v.as_dict() for v in self.variants],
            "stopped_variants": {k: dict(v) for k, v in self.stopped_variants.items()},
        }

    # -- assignment --------------------------------------------------------------------
    def variant_named(self, name: str) -> Variant:
        for v in self.variants:
            if v.name == name:
                return v
        raise ExperimentError(
            f"experiment {self.name!r} has no variant {name!r}; "
            f"expected one of {', '.join(v.name for v in self.variants)}"
        )

    def variant_of(self, user_id: str) -> str | None:
        """The variant the user is bucketed into, or ``None`` (exempt)."""
        u = bucket_point(self.salt, user_id)
        for v in self.variants:
            low, high = v.lane
            if low <= u < high:
                return v.name if u < low + v.share else None
        return None

    def served_variant(self, variant: str) -> str:
        """What a variant's users are served: itself, or the control once it is stopped."""
        return self.control if variant in self.stopped_variants else variant

    # -- commands (each returns the next record; the caller publishes it) --------------
    def started(self, now: float, shares: Mapping[str, float] | None = None) -> Experiment:
        """A new run of this definition, with ``shares`` (default: the defined ones)."""
        run = f"{int(now * 1000):x}"
        fresh = replace(
            self,
            status="running",
            run=run,
            started_at=now,
            updated_at=now,
            revision=self.revision + 1,
            stopped_variants={},
        )
        return fresh._with_shares(shares or {}, ramping=False)

    def ramped(self, now: float, shares: Mapping[str, float]) -> Experiment:
        """The running experiment with higher shares: users only leave exempt."""
        if self.status != "running":
            raise ExperimentError(f"experiment {self.name!r} is {self.status}; start it first")
        moved = self._with_shares(shares, ramping=True)
        return replace(moved, revision=self.revision + 1, updated_at=now)

    def stopped(self, now: float, variant: str | None = None, reason: str = "") -> Experiment:
        """Stop one variant (its users get the control) or, without one, the experiment."""
        if variant is None:
            return replace(self, status="stopped", revision=self.revision + 1, updated_at=now)
        self.variant_named(variant)
        if variant == self.control:
            raise ExperimentError(
                f"{variant!r} is the control of {self.name!r}: stop the experiment instead"
            )
        stops = dict(self.stopped_variants)
        stops.setdefault(variant, {"reason": reason or "stopped by an operator", "at": now})
        return replace(self, stopped_variants=stops, revision=self.revision + 1, updated_at=now)

    def _with_shares(self, shares: Mapping[str, float], ramping: bool) -> Experiment:
        names = {v.name for v in self.variants}
        for name in shares:
            if name not in names:
                raise ExperimentError(
                    f"--shares: {self.name!r} has no variant {name!r}; "
                    f"expected one of {', '.join(v.name for v in self.variants)}"
                )
        variants = []
        for v in self.variants:
            share = _number(shares.get(v.name, v.share), f"--shares {v.name}", 0.0, 1.0)
            cap = v.lane[1] - v.lane[0]
            if share > cap + 1e-12:
                raise ExperimentError(
                    f"--shares {v.name}: {share:g} is over its max_share {cap:g} "
                    "(the lanes are fixed while the experiment runs)"
                )
            if ramping and share < v.share:
                raise ExperimentError(
                    f"--shares {v.name}: {share:g} is below the current {v.share:g}; a ramp "
                    "only raises shares (users may not leave a variant): stop the experiment"
                )
            variants.append(replace(v, share=share))
        return replace(self, variants=tuple(variants))


def parse_shares(text: str, names: Sequence[str] | None = None) -> dict[str, float]:
    """``control=0.3,treatment=0.3`` (or one number for every variant of ``names``).

    >>> parse_shares("a=0.1,b=0.2"), parse_shares("0.01", ["a", "b"])
    ({'a': 0.1, 'b': 0.2}, {'a': 0.01, 'b': 0.01})
    """
    text = text.strip()
    if "=" not in text and names is not None:
        try:
            value = float(text)
        except ValueError:
            raise ExperimentError(
                f"--shares: expected NAME=SHARE,... or one share, got {text!r}"
            ) from None
        return {name: value for name in names}
    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        try:
            if not sep:
                raise ValueError
            out[name.strip()] = float(value)
        except ValueError:
            raise ExperimentError(f"--shares: expected NAME=SHARE, got {part!r}") from None
    if not out:
        raise ExperimentError("--shares: expected NAME=SHARE,...")
    return out


# -- statistics -------------------------------------------------------------------------

#: What the stream sums per user and experiment run, in this order.
QUANTITIES = (
    "requests",
    "errors",
    "latency_seconds",
    "impressions",
    "clicks",
    "favorites",
    "carts",
    "purchases",
    "revenue",
)
Q = {name: i for i, name in enumerate(QUANTITIES)}
#: Reported metrics: name -> (numerator, denominator; None = per user).
METRICS: dict[str, tuple[str, str | None]] = {
    "click_through": ("clicks", "impressions"),
    "favorite_rate": ("favorites", "impressions"),
    "cart_rate": ("carts", "impressions"),
    "conversion": ("purchases", "impressions"),
    "revenue_per_user": ("revenue", None),
    "error_rate": ("errors", "requests"),
    "latency_ms": ("latency_seconds", "requests"),
}


def _tri(i: int, j: int) -> int:
    """Index of (i, j) in the packed upper triangle of a QUANTITIES x QUANTITIES matrix."""
    if i > j:
        i, j = j, i
    n = len(QUANTITIES)
    return i * n - i * (i - 1) // 2 + (j - i)


@dataclass
class Moments:
    """Running sums over users: ``n``, ``sums[q]`` and ``cross[q, r]`` (upper triangle).

    Moving one user's totals from ``old`` to ``new`` (:meth:`move`) keeps every
    sum exact, so the stream keeps these per partition and adds partitions up.

    >>> m = Moments()
    >>> m.move(None, [1, 0, 0.1, 10, 2, 0, 1, 0, 0])
    >>> m.move(None, [1, 0, 0.2, 10, 4, 0, 0, 0, 0])
    >>> r, se = m.ratio("clicks", "impressions")
    >>> round(r, 3), round(se, 3)
    (0.3, 0.1)
    """

    n: int = 0
    sums: list[float] = field(default_factory=lambda: [0.0] * len(QUANTITIES))
    cross: list[float] = field(
        default_factory=lambda: [0.0] * (len(QUANTITIES) * (len(QUANTITIES) + 1) // 2)
    )

    def move(self, old: Sequence[float] | None, new: Sequence[float]) -> None:
        """Replace one user's totals ``old`` (``None``: a new user) by ``new``."""
        if old is None:
            self.n += 1
            old = [0.0] * len(QUANTITIES)
        sums, cross = self.sums, self.cross
        size = len(QUANTITIES)
        for i in range(size):
            sums[i] += new[i] - old[i]
            if new[i] or old[i]:
                for j in range(i, size):
                    cross[_tri(i, j)] += new[i] * new[j] - old[i] * old[j]

    def add(self, other: Moments) -> None:
        self.n += other.n
        self.sums = [a + b for a, b in zip(self.sums, other.sums, strict=True)]
        self.cross = [a + b for a, b in zip(self.cross, other.cross, strict=True)]

    def to_state(self) -> list[Any]:
        return [self.n, self.sums, self.cross]

    @classmethod
    def from_state(cls, state: Sequence[Any]) -> Moments:
        return cls(int(state[0]), [float(x) for x in state[1]], [float(x) for x in state[2]])

    def ratio(self, numerator: str, denominator: str | None) -> tuple[float, float]:
        """``(R, standard error)`` of ``sum(y) / sum(x)`` by the delta method over users.

        ``denominator=None`` is a mean per user (x = 1). NaN when there is no data.
        """
        y = Q[numerator]
        n = self.n
        if denominator is None:
            sx, sxx, sxy = float(n), float(n), self.sums[y]
        else:
            x = Q[denominator]
            sx, sxx, sxy = self.sums[x], self.cross[_tri(x, x)], self.cross[_tri(x, y)]
        sy, syy = self.sums[y], self.cross[_tri(y, y)]
        if n < 1 or sx <= 0:
            return math.nan, math.nan
        r = sy / sx
        if n < 2:
            return r, math.nan
        residual = max(syy - 2 * r * sxy + r * r * sxx, 0.0)
        return r, math.sqrt(residual * n / (n - 1)) / sx


def normal_p_value(z: float) -> float:
    """Two-sided p-value of a standard normal statistic.

    >>> round(normal_p_value(1.959963984540054), 3)
    0.05
    """
    return math.erfc(abs(z) / math.sqrt(2.0))


def compare(
    treatment: tuple[float, float], control: tuple[float, float]
) -> dict[str, float | None]:
    """Difference of two independent estimates ``(value, se)``: CI, relative lift, z and p.

    >>> c = compare((0.12, 0.01), (0.10, 0.01))
    >>> round(c["difference"], 3), round(c["ci_low"], 4), round(c["p_value"], 3)
    (0.02, -0.0077, 0.157)
    """
    (b, se_b), (a, se_a) = treatment, control
    out: dict[str, float | None] = dict.fromkeys(
        (
            "difference",
            "ci_low",
            "ci_high",
            "relative",
            "relative_ci_low",
            "relative_ci_high",
            "z",
            "p_value",
        )
    )
    if any(math.isnan(v) for v in (a, b, se_a, se_b)):
        return out
    diff = b - a
    se = math.hypot(se_a, se_b)
    out.update(difference=diff, ci_low=diff - Z95 * se, ci_high=diff + Z95 * se)
    if se > 0:
        z = diff / se
        out.update(z=z, p_value=normal_p_value(z))
    if a > 0:
        # delta method for b / a - 1
        se_rel = math.sqrt(se_b**2 / a**2 + b**2 * se_a**2 / a**4)
        rel = b / a - 1
        out.update(
            relative=rel, relative_ci_low=rel - Z95 * se_rel, relative_ci_high=rel + Z95 * se_rel
        )
    return out


TEST_DESCRIPTION = (
    "two-sided z-test on the difference of per-variant ratios; standard errors by the delta "
    "method over users (the unit of randomisation), 95% intervals"
)


#: Reported units per metric (latency is summed in seconds, reported in ms).
SCALE = {"latency_ms": 1000.0}


def metric_value(moments: Moments, name: str) -> tuple[float, float]:
    """``(value, standard error)`` of the metric ``name`` of :data:`METRICS`, in its unit."""
    num, den = METRICS[name]
    value, se = moments.ratio(num, den)
    scale = SCALE.get(name, 1.0)
    return value * scale, se * scale


def metric_rows(moments: Moments) -> dict[str, dict[str, float | None]]:
    """Every metric of :data:`METRICS` with its 95% interval, for one variant."""
    rows: dict[str, dict[str, float | None]] = {}
    for name in METRICS:
        value, se = metric_value(moments, name)
        if math.isnan(value):
            rows[name] = {"value": None, "se": None, "ci_low": None, "ci_high": None}
            continue
        se_s = None if math.isnan(se) else se
        rows[name] = {
            "value": value,
            "se": se_s,
            "ci_low": None if se_s is None else value - Z95 * se_s,
            "ci_high": None if se_s is None else value + Z95 * se_s,
        }
    return rows


def report(
    experiment: Experiment, moments: Mapping[str, Moments], latency: Mapping[str, Sequence[float]]
) -> dict[str, Any]:
    """``GET /experiments/{name}``: per-variant counts and metrics, each variant against control.

    ``moments`` maps variant -> its summed :class:`Moments`; ``latency`` maps
    variant -> request counts per bucket of :data:`LATENCY_BUCKETS_MS` (+Inf last).
    """
    variants: dict[str, Any] = {}
    for v in experiment.variants:
        m = moments.get(v.name, Moments())
        counts = {q: m.sums[Q[q]] for q in QUANTITIES if q != "latency_seconds"}
        variants[v.name] = {
            **v.as_dict(),
            "stopped": experiment.stopped_variants.get(v.name),
            "users": m.n,
            "counts": counts,
            "metrics": metric_rows(m),
            "latency_ms_quantiles": latency_quantiles(latency.get(v.name, ())),
        }
    control = moments.get(experiment.control, Moments())
    comparisons: dict[str, Any] = {}
    for v in experiment.variants:
        if v.name == experiment.control:
            continue
        m = moments.get(v.name, Moments())
        comparisons[v.name] = {
            name: compare(metric_value(m, name), metric_value(control, name)) for name in METRICS
        }
    return {
        **experiment.as_record(),
        "variants": variants,
        "comparisons": comparisons,
        "test": TEST_DESCRIPTION,
        "metrics_definition": {
            k: {"numerator": a, "denominator": b or "users"} for k, (a, b) in METRICS.items()
        },
    }


#: Request latency buckets (upper bounds, ms) of the per-variant histograms.
LATENCY_BUCKETS_MS = (5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0)


def latency_bucket(ms: float) -> int:
    """Index of the bucket ``ms`` falls in (the last one is +Inf)."""
    for i, bound in enumerate(LATENCY_BUCKETS_MS):
        if ms <= bound:
            return i
    return len(LATENCY_BUCKETS_MS)


def latency_quantiles(counts: Sequence[float]) -> dict[str, float | None]:
    """p50/p95/p99 upper bounds (ms) from bucket counts (None without data; inf past the last).

    >>> latency_quantiles([0, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1])["p50"]
    10.0
    """
    total = sum(counts)
    out: dict[str, float | None] = {}
    for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
        if not total:
            out[name] = None
            continue
        seen = 0.0
        for i, count in enumerate(counts):
            seen += count
            if seen >= q * total:
                out[name] = LATENCY_BUCKETS_MS[i] if i < len(LATENCY_BUCKETS_MS) else math.inf
                break
    return out


def p95(latencies_ms: Sequence[float]) -> float:
    """95th percentile (nearest rank) of a window of latencies.

    >>> p95(list(range(1, 101)))
    95
    """
    ordered = sorted(latencies_ms)
    return ordered[max(math.ceil(0.95 * len(ordered)) - 1, 0)]
