"""Actor-critic networks: the only module that uses flax.

Separate actor and critic MLPs (no shared torso, the classic-control default), orthogonal
initialization with gain sqrt(2) on hidden layers, 0.01 on the policy head and 1.0 on the value
head, zero biases (Huang et al. 2022, details 2 and 3). Networks are rebuilt from the Config by
`make`; only their params are carried in the train state.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxppo import distributions
from jaxppo.config import Config

_ACTIVATIONS = {"tanh": nn.tanh, "relu": nn.relu}

HIDDEN_GAIN = math.sqrt(2.0)
POLICY_GAIN = 0.01
VALUE_GAIN = 1.0


def _dense(features: int, gain: float, name: str) -> nn.Dense:
    return nn.Dense(
        features,
        kernel_init=nn.initializers.orthogonal(gain),
        bias_init=nn.initializers.zeros,
        name=name,
    )


class MLP(nn.Module):
    """Hidden layers of ``hidden_sizes`` with ``activation``, then a linear head."""

    hidden_sizes: Sequence[int]
    activation: str
    out_features: int
    out_gain: float

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        act = _ACTIVATIONS[self.activation]
        for i, width in enumerate(self.hidden_sizes):
            x = act(_dense(width, HIDDEN_GAIN, f"hidden_{i}")(x))
        return _dense(self.out_features, self.out_gain, "head")(x)


class ActorCritic(nn.Module):
    """obs [..., O] -> (action distribution over [...], value [...]).

    Attributes:
        hidden_sizes: widths of the hidden layers of each MLP.
        activation: "tanh" or "relu".
        num_actions: K for a Categorical policy; 0 for a Gaussian one.
        action_size: D for a Gaussian policy (ignored when ``num_actions`` > 0).
    """

    hidden_sizes: Sequence[int]
    activation: str
    num_actions: int
    action_size: int = 0

    def setup(self) -> None:
        self.critic = MLP(self.hidden_sizes, self.activation, 1, VALUE_GAIN)
        out = self.num_actions or self.action_size
        self.actor = MLP(self.hidden_sizes, self.activation, out, POLICY_GAIN)
        if not self.num_actions:
            # State-independent log std, a free parameter (set to Config.init_log_std by init).
            self.log_std = self.param("log_std", nn.initializers.zeros, (self.action_size,))

    def __call__(self, obs: jax.Array):
        return self.policy(obs), self.value(obs)

    def value(self, obs: jax.Array) -> jax.Array:
        """V(obs), shape [...]."""
        return self.critic(obs)[..., 0]

    def policy(self, obs: jax.Array):
        """The action distribution at obs, batched over [...]."""
        out = self.actor(obs)
        if self.num_actions:
            return distributions.Categorical.from_logits(out)
        return distributions.DiagGaussian(out, self.log_std)


def make(config: Config, env) -> ActorCritic:
    """The network for ``config`` on ``env`` (a `jaxppo.envs` env)."""
    space = env.action_space
    return ActorCritic(
        hidden_sizes=tuple(config.hidden_sizes),
        activation=config.activation,
        num_actions=space.num_actions if space.discrete else 0,
        action_size=0 if space.discrete else math.prod(space.shape),
    )


def init(config: Config, env, key: jax.Array):
    """Initial params: orthogonal weights, zero biases, log_std = config.init_log_std."""
    network = make(config, env)
    params = network.init(key, jnp.zeros((env.observation_size,), jnp.float32))
    if env.action_space.discrete:
        return params
    inner = dict(params["params"])
    inner["log_std"] = jnp.full_like(inner["log_std"], config.init_log_std)
    return {"params": inner}
