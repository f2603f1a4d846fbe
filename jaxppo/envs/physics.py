"""Physics env params of the MuJoCo-based suites (`playground`, `brax`): `PHYSICS_PARAMS`, set
on the model an env steps (`with_physics`), through `PhysicsParams`.

Values may be tracers: a sweep over them (an env sweep, or domain randomization across runs)
is one compiled call. An MJX model (Playground) takes them in MJX's fields; a Brax ``System``
is an MJX model with copies of its own that Brax's pipelines read instead (``gravity``, the
links' inertia, the dofs' damping), so both are set, and every Brax pipeline sees the same
physics.
"""

from __future__ import annotations

import copy

import jax
import jax.numpy as jnp
import numpy as np

from jaxppo.envs import core

# The env params a physics run takes (`core.TunableParams.with_params`): name -> what it sets.
PHYSICS_PARAMS = {
    "gravity": "the vertical component of gravity, m/s^2 (the model's: -9.81)",
    "mass_scale": "every body's mass and rotational inertia, times this (1.0)",
    "friction_scale": "every geom's friction coefficients, times this (1.0)",
    "damping_scale": "every joint's damping, times this (1.0)",
}


def with_physics(model, values):
    """``model`` (an MJX model or a Brax ``System``) with the `PHYSICS_PARAMS` in ``values``
    applied."""
    changes, brax_changes = {}, {}
    brax = hasattr(model, "link")  # a Brax System
    for name, value in values.items():
        value = jnp.asarray(value, jnp.float32)
        if name == "gravity":
            changes["opt"] = model.opt.replace(gravity=model.opt.gravity.at[2].set(value))
            if brax:
                brax_changes["gravity"] = model.gravity.at[2].set(value)
        elif name == "mass_scale":
            changes["body_mass"] = model.body_mass * value
            changes["body_inertia"] = model.body_inertia * value
            if brax:
                inertia = model.link.inertia
                brax_changes["link"] = model.link.replace(inertia=inertia.replace(
                    mass=inertia.mass * value, i=inertia.i * value))
        elif name == "friction_scale":  # Brax's contacts come from MJX's collision
            changes["geom_friction"] = model.geom_friction * value
        elif name == "damping_scale":
            changes["dof_damping"] = model.dof_damping * value
            if brax:
                brax_changes["dof"] = model.dof.replace(damping=model.dof.damping * value)
    return model.replace(**changes, **brax_changes)


class PhysicsParams(core.TunableParams):
    """`core.TunableParams` whose params are `PHYSICS_PARAMS`, for an adapter whose raw env
    ``suite_env`` steps the model held in its attribute ``_model_field``, through the
    adapter's jitted ``_suite_reset`` and ``_suite_step``."""

    _model_field: str

    def _replaced(self, values):
        suite_env = copy.copy(self.suite_env)
        model = getattr(self.suite_env, self._model_field)
        setattr(suite_env, self._model_field, with_physics(model, values))
        env = copy.copy(self)
        env.suite_env = suite_env
        # Not jitted: the values are the caller's tracers, and the caller's jit inlines these.
        env._suite_reset, env._suite_step = suite_env.reset, suite_env.step
        return env

    def _param_problems(self) -> dict[str, str | None]:
        return dict.fromkeys(PHYSICS_PARAMS)  # every one can be set

    def value_error(self, name: str, value) -> str | None:
        """Why ``value`` cannot be the env param ``name`` (a scale must be positive), or None;
        traced values are not checked."""
        if isinstance(value, jax.core.Tracer) or not name.endswith("_scale"):
            return None
        if not np.all(np.asarray(value) > 0):
            return f"{name!r} scales the model's own values and must be > 0"
        return None
