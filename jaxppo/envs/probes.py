"""Probe environments: tiny MDPs whose optimal values and actions are known in closed form.

Each isolates one part of the learner, so a failing probe says where a bug is (the idea of
Andy Jones' "debugging RL" probes). They follow gymnax's `Environment` interface, so they run
through exactly the same adapter, rollout and update as real environments.

| id                    | actions     | what is learned                | known answer             |
|-----------------------|-------------|--------------------------------|--------------------------|
| ProbeValue-v0         | 1           | critic conditions on the obs   | V(+1) = +1, V(-1) = -1   |
| ProbeDiscount-v0      | 1           | discounting over two steps     | V(0) = gamma, V(1) = 1   |
| ProbeTruncation-v0    | 1           | bootstrapping past time limits | V = 1 / (1 - gamma)      |
| ProbePolicy-v0        | 2           | actor conditions on the obs    | a = 1 on +1, 0 on -1     |
| ProbeContinuous-v0    | Box [-1, 1] | Gaussian mean follows the obs  | a = obs / 2              |
| ProbeMasked-v0        | 4, masked   | action masks reach the policy  | a = 2 on +1, 1 on -1     |
| ProbeMemory-v0        | 2           | memory of a cue for 4 steps    | R = 1 (memoryless: 0)    |
| ProbeMultiDiscrete-v0 | 3x2, masked | a head per component + masks   | a = (1+obs, (1+obs)/2)   |
| ProbeImage-v0         | 2           | a CNN locates a pixel          | a = 1 iff col >= 3       |

ProbeMasked-v0 and ProbeMultiDiscrete-v0 have invalid actions, given by their
``action_mask(state, params)`` (the adapter exposes it as `GymnaxEnv.action_mask`): ProbeMasked
allows {0, 2} on sign +1 and {1, 3} on sign -1; ProbeMultiDiscrete never allows action 1 of its
first component. ProbeMemory-v0 shows its cue (the sign) only at t = 0 and asks for it at
t = DELAY = 4 (a = 1 on +1, 0 on -1), where the observation is the same for both signs, so a
memoryless policy earns 0 in expectation. ProbeImage-v0 observes a 6 x 6 x 2 image whose one
lit pixel, in channel 0, says which half (col < 3 or col >= 3) is rewarded.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment, spaces


@struct.dataclass
class ProbeState(environment.EnvState):
    sign: jax.Array


@struct.dataclass
class ProbeParams(environment.EnvParams):
    max_steps_in_episode: int = 1000


class _Probe(environment.Environment[ProbeState, ProbeParams]):
    """Shared plumbing: observation = [sign] or [time]; subclasses give reward and ending."""

    num_actions_: int = 1
    observe_time = False

    @property
    def default_params(self) -> ProbeParams:
        return ProbeParams()

    def reset_env(self, key, params):
        sign = jnp.where(jax.random.bernoulli(key), 1.0, -1.0)
        state = ProbeState(sign=sign, time=0)
        return self.get_obs(state), state

    def get_obs(self, state, params=None, key=None):
        value = jnp.asarray(state.time, jnp.float32) if self.observe_time else state.sign
        return jnp.reshape(value, (1,)).astype(jnp.float32)

    def step_env(self, key, state, action, params):
        reward, terminated = self.transition(state, action)
        state = state.replace(time=state.time + 1)
        return self.get_obs(state), state, jnp.asarray(reward, jnp.float32), terminated, {}

    def transition(self, state, action):
        raise NotImplementedError

    def is_terminated(self, state, params):
        return jnp.array(False)

    @property
    def name(self) -> str:
        return type(self).__name__

    @property
    def num_actions(self) -> int:
        return self.num_actions_

    def action_space(self, params=None):
        return spaces.Discrete(self.num_actions_)

    def observation_space(self, params=None):
        return spaces.Box(-1.0, 1.0, (1,), jnp.float32)


class ProbeValue(_Probe):
    """One step; reward = the observed sign."""

    def transition(self, state, action):
        return state.sign, jnp.array(True)


class ProbeDiscount(_Probe):
    """Two steps observing time 0 then 1; reward 1 only at the end of the second."""

    observe_time = True

    def transition(self, state, action):
        last = state.time >= 1
        return jnp.where(last, 1.0, 0.0), last


class ProbeTruncation(_Probe):
    """Reward 1 every step, never terminates, cut by a 5-step time limit; the observation
    is constant, so only bootstrapping through truncation gives V = 1 / (1 - gamma)."""

    @property
    def default_params(self) -> ProbeParams:
        return ProbeParams(max_steps_in_episode=5)

    def get_obs(self, state, params=None, key=None):
        return jnp.zeros((1,), jnp.float32)

    def transition(self, state, action):
        return 1.0, jnp.array(False)


class ProbePolicy(_Probe):
    """One step; reward +1 for action 1 on sign +1 or action 0 on sign -1, else -1."""

    num_actions_ = 2

    def transition(self, state, action):
        right = jnp.where(state.sign > 0, action == 1, action == 0)
        return jnp.where(right, 1.0, -1.0), jnp.array(True)


class ProbeContinuous(_Probe):
    """One step, action in [-1, 1]; reward = -(a - sign / 2)^2, best action sign / 2."""

    def transition(self, state, action):
        a = jnp.reshape(action, ())
        return -((a - 0.5 * state.sign) ** 2), jnp.array(True)

    def action_space(self, params=None):
        return spaces.Box(-1.0, 1.0, (1,), jnp.float32)


class ProbeMasked(_Probe):
    """One step, 4 actions of which 2 are valid: {0, 2} on sign +1, {1, 3} on sign -1.

    Reward +1 for the best valid action (2 on +1, 1 on -1), 0 for the other valid one and -1
    for an invalid one. With masking, the optimal policy earns +1, so V = 1.
    """

    num_actions_ = 4

    def action_mask(self, state, params=None) -> jax.Array:
        """Valid actions bool[4] in ``state``: [T, F, T, F] on sign +1, [F, T, F, T] on -1."""
        positive = jnp.array([True, False, True, False])
        return jnp.where(state.sign > 0, positive, ~positive)

    def transition(self, state, action):
        valid = self.action_mask(state)[action]
        best = action == jnp.where(state.sign > 0, 2, 1)
        reward = jnp.where(best, 1.0, jnp.where(valid, 0.0, -1.0))
        return reward, jnp.array(True)


class ProbeMemory(_Probe):
    """A cue sign shown only at t = 0, asked for at t = DELAY; DELAY + 1 steps per episode.

    Observation [cue, query] = [sign if t == 0 else 0, 1 if t == DELAY else 0]. Actions before
    the query do nothing (reward 0); at the query, +1 for action 1 on sign +1 or action 0 on
    sign -1, else -1, and the episode terminates. The query observation is the same for both
    signs, so a memoryless policy earns 0 in expectation and one with memory earns +1.
    """

    num_actions_ = 2
    DELAY = 4

    def get_obs(self, state, params=None, key=None):
        cue = jnp.where(state.time == 0, state.sign, 0.0)
        query = jnp.where(state.time == self.DELAY, 1.0, 0.0)
        return jnp.stack([cue, query]).astype(jnp.float32)

    def transition(self, state, action):
        query = state.time >= self.DELAY
        right = jnp.where(state.sign > 0, action == 1, action == 0)
        return jnp.where(query, jnp.where(right, 1.0, -1.0), 0.0), query

    def observation_space(self, params=None):
        return spaces.Box(-1.0, 1.0, (2,), jnp.float32)


class ProbeMultiDiscrete(_Probe):
    """One step, action (a0, a1) in {0, 1, 2} x {0, 1}, received as an int array [2].

    Reward 0.5 * [a0 == (2 on sign +1, 0 on -1)] + 0.5 * [a1 == (1 on +1, 0 on -1)], minus 1
    when a0 is 1, which the mask never allows. The optimal return is 1.
    """

    num_actions_ = 5  # 3 + 2: the size of the flat action mask

    def action_mask(self, state, params=None) -> jax.Array:
        """Valid actions bool[5], component 0's 3 entries then component 1's 2:
        [T, F, T | T, T] whatever the state."""
        return jnp.array([True, False, True, True, True])

    def transition(self, state, action):
        positive = state.sign > 0
        first = action[0] == jnp.where(positive, 2, 0)
        second = action[1] == jnp.where(positive, 1, 0)
        reward = 0.5 * first + 0.5 * second - jnp.where(action[0] == 1, 1.0, 0.0)
        return reward, jnp.array(True)

    def action_space(self, params=None):
        return spaces.Tuple([spaces.Discrete(3), spaces.Discrete(2)])


@struct.dataclass
class ImageState(environment.EnvState):
    row: jax.Array
    col: jax.Array


class ProbeImage(_Probe):
    """One step on a SIZE x SIZE x 2 image: a single 1.0 in channel 0 at a (row, col) drawn
    uniformly at reset, channel 1 all zeros. Reward +1 for action 1 when col >= SIZE / 2 (right
    half) or action 0 otherwise, else -1."""

    num_actions_ = 2
    SIZE = 6

    def reset_env(self, key, params):
        row, col = jax.random.randint(key, (2,), 0, self.SIZE)
        state = ImageState(row=row, col=col, time=0)
        return self.get_obs(state), state

    def get_obs(self, state, params=None, key=None):
        image = jnp.zeros((self.SIZE, self.SIZE, 2), jnp.float32)
        return image.at[state.row, state.col, 0].set(1.0)

    def transition(self, state, action):
        right = jnp.where(state.col >= self.SIZE // 2, action == 1, action == 0)
        return jnp.where(right, 1.0, -1.0), jnp.array(True)

    def observation_space(self, params=None):
        return spaces.Box(0.0, 1.0, (self.SIZE, self.SIZE, 2), jnp.float32)


PROBES = {
    "ProbeValue-v0": ProbeValue,
    "ProbeDiscount-v0": ProbeDiscount,
    "ProbeTruncation-v0": ProbeTruncation,
    "ProbePolicy-v0": ProbePolicy,
    "ProbeContinuous-v0": ProbeContinuous,
    "ProbeMasked-v0": ProbeMasked,
    "ProbeMemory-v0": ProbeMemory,
    "ProbeMultiDiscrete-v0": ProbeMultiDiscrete,
    "ProbeImage-v0": ProbeImage,
}
