"""Settings known to learn, per environment: `PRESETS` and `preset(env_id)`.

Each entry names where it came from. `jaxppo train --env X` starts from `preset(X)`.
"""

from __future__ import annotations

from jaxppo.config import Config

# What RL Baselines3 Zoo's classic-control PPO settings (hyperparams/ppo.yml) share: normalized
# observations and rewards, 4 epochs, lr 3e-4 held, no value clipping, 1M steps.
_RL_ZOO = dict(total_timesteps=1_000_000, update_epochs=4, normalize_obs=True, scale_rewards=True,
               clip_value_loss=False, anneal_lr=False, learning_rate=3e-4)

# Settings known to learn, per environment (the learning tests check them; see README).
PRESETS: dict[str, Config] = {
    # REFERENCES.md's classic CartPole settings are Config's defaults.
    "CartPole-v1": Config(env_id="CartPole-v1"),
    # Continuous control: longer rollouts, 10 epochs of 64-sample minibatches, a shorter
    # horizon (gamma 0.95, the swing-up reward is dense), no entropy bonus, no value clipping
    # (returns reach -150, far outside any 0.2 clip band), lr 1e-3 annealed.
    "Pendulum-v1": Config(
        env_id="Pendulum-v1",
        num_envs=16,
        num_steps=128,
        total_timesteps=1_000_000,
        update_epochs=10,
        num_minibatches=32,
        learning_rate=1e-3,
        gamma=0.95,
        ent_coef=0.0,
        clip_value_loss=False,
    ),
    # RL Baselines3 Zoo's MountainCar-v0 settings (hyperparams/ppo.yml: normalized observations
    # and rewards, 16 envs x 16 steps, 64-sample minibatches, 4 epochs, lambda 0.98, lr 3e-4
    # held), with the entropy bonus that won jaxppo's search (bench/results/zoo/search): the
    # defaults never reach the flag, these do in every seed.
    "MountainCar-v0": Config(env_id="MountainCar-v0", num_envs=16, num_steps=16,
                             num_minibatches=4, gae_lambda=0.98, ent_coef=0.01, **_RL_ZOO),
    # RL Baselines3 Zoo's Acrobot-v1 settings (hyperparams/ppo.yml: normalized observations
    # and rewards, 16 envs x 256 steps, 64-sample minibatches, 4 epochs, lambda 0.94, lr 3e-4
    # held, no entropy bonus), which won jaxppo's search (bench/results/zoo/search): training
    # IQM -76.9 at 1M steps where the defaults reach -83.1 at 500k.
    "Acrobot-v1": Config(env_id="Acrobot-v1", num_envs=16, num_steps=256, num_minibatches=64,
                         gae_lambda=0.94, ent_coef=0.0, **_RL_ZOO),
    # RL Baselines3 Zoo's MountainCarContinuous-v0 settings (hyperparams/ppo.yml): one env x
    # 8 steps, 10 epochs, lr 7.77e-5 held, gamma 0.9999, lambda 0.9, clip 0.1, entropy 0.00429,
    # vf_coef 0.19, grad norm 5, normalized observations and rewards, 20k steps, and gSDE with
    # log std -3.29, without which these settings stand still (tests/test_gsde.py); the zoo
    # also turns orthogonal init off, which jaxppo keeps.
    "MountainCarContinuous-v0": Config(
        env_id="MountainCarContinuous-v0", num_envs=1, num_steps=8, total_timesteps=20_000,
        num_minibatches=1, update_epochs=10, learning_rate=7.77e-5, anneal_lr=False,
        gamma=0.9999, gae_lambda=0.9, clip_eps=0.1, ent_coef=0.00429, vf_coef=0.19,
        max_grad_norm=5.0, normalize_obs=True, scale_rewards=True, clip_value_loss=False,
        gsde=True, init_log_std=-3.29),
    # A memory task: the context bit is shown at the first step and asked for at the last
    # (5 steps later), so it needs the recurrent core; a feed-forward policy stays at chance.
    # The probe settings of tests/test_recurrent.py on bsuite's chain: a GRU of 32 after one
    # 32-wide layer, 16 envs x 20 steps, lr 3e-3, gamma 0.9 (bench/results/networks_learning).
    "MemoryChain-bsuite": Config(
        env_id="MemoryChain-bsuite",
        num_envs=16,
        num_steps=20,
        total_timesteps=48_000,
        num_minibatches=2,
        hidden_sizes=(32,),
        core="gru",
        core_size=32,
        shuffle="trajectories",
        learning_rate=3e-3,
        anneal_lr=False,
        clip_value_loss=False,
        gamma=0.9,
    ),
    # A meta-learning bandit: which arm pays is drawn per episode of 100 pulls, so the policy
    # must remember what it has seen. A GRU of 64 over whole 100-step episodes, lr 3e-3 (the
    # best of 3e-4, 1e-3 and 3e-3 in jaxppo's search, bench/results/zoo/search); the
    # defaults' MLP reaches 66 where this reaches 89.
    "BernoulliBandit-misc": Config(
        env_id="BernoulliBandit-misc",
        num_envs=16,
        num_steps=100,
        num_minibatches=4,
        hidden_sizes=(64,),
        core="gru",
        core_size=64,
        shuffle="trajectories",
        learning_rate=3e-3,
    ),
    # Navix's own PPO baseline for this grid (navix: baselines/rejax/configs, Empty-Random-8x8:
    # 64 envs x 128 steps, 8 epochs of one minibatch, grad norm 10, lambda 0.8, normalized
    # observations, about 1M steps), tanh where it has swish, with the lr that won jaxppo's
    # search (bench/results/zoo/search): 1e-3 held reached 1.0 by 524k steps, where its 3e-4
    # annealed ended at 0.7 after 1M.
    "navix/Navix-Empty-Random-8x8-v0": Config(
        env_id="navix/Navix-Empty-Random-8x8-v0", num_envs=64, num_steps=128,
        total_timesteps=1_048_576, update_epochs=8, num_minibatches=1, learning_rate=1e-3,
        anneal_lr=False, max_grad_norm=10.0, gae_lambda=0.8, normalize_obs=True),
    # XLand-MiniGrid's DoorKey-5x5 with the Navix preset's settings above (a grid world of the
    # same kind), whose lr 1e-3 won jaxppo's search here too
    # (bench/results/zoo/search/xminigrid_*): 1.0 [0.7, 1.0] at 500k steps, 3e-4 0.3.
    "xminigrid/MiniGrid-DoorKey-5x5": Config(
        env_id="xminigrid/MiniGrid-DoorKey-5x5", num_envs=64, num_steps=128,
        total_timesteps=1_048_576, update_epochs=8, num_minibatches=1, learning_rate=1e-3,
        anneal_lr=False, max_grad_norm=10.0, gae_lambda=0.8, normalize_obs=True),
    # The Craftax baselines' PPO at the 1M budget (Craftax_Baselines, ppo.py: 256 envs x 16
    # steps, 8 minibatches, 4 epochs, lr 2e-4 annealed, lambda 0.8, grad norm 1, entropy
    # 0.01), with 2 x 256 tanh where they have 3 x 512: on a 2-core CPU that network ran 1.4k
    # env steps/s over 2 seeds, this one 3.0k.
    "craftax/Craftax-Classic-Symbolic-v1": Config(
        env_id="craftax/Craftax-Classic-Symbolic-v1", num_envs=256, num_steps=16,
        total_timesteps=1_048_576, num_minibatches=8, update_epochs=4, learning_rate=2e-4,
        gae_lambda=0.8, max_grad_norm=1.0, ent_coef=0.01, hidden_sizes=(256, 256)),
    # Jumanji's 12 x 12 Snake, whose action mask forbids turning back into the body: jaxppo's
    # own search (bench/results/zoo/search/jumanji_Snake-v1*), 64 envs x 128 steps, the mask,
    # normalized observations (the step count reaches 4,000) and 8 epochs; 64 x 64 tanh.
    "jumanji/Snake-v1": Config(
        env_id="jumanji/Snake-v1", num_envs=64, num_steps=128, total_timesteps=2_000_000,
        update_epochs=8, action_masking=True, normalize_obs=True),
    # Playground's tuned DM Control PPO (mujoco_playground/config/dm_control_suite_params.py:
    # discount 0.995, lr 1e-3 held, entropy 0.01, normalized observations, 30-step unrolls;
    # Brax's clip 0.3), with 128 envs where it has 2048: bench/brax_ppo.py trains these
    # numbers beside Brax's own PPO trainer.
    "playground/CartpoleBalance": Config(
        env_id="playground/CartpoleBalance", num_envs=128, num_steps=30,
        total_timesteps=2_000_000, num_minibatches=8, learning_rate=1e-3, anneal_lr=False,
        gamma=0.995, clip_eps=0.3, normalize_obs=True, clip_value_loss=False,
        shuffle="trajectories"),
}

# A meta-learning task like the bandit above: the goal on the half circle is drawn per
# episode and hidden, and the robot restarts elsewhere each time it reaches it, so what it
# remembers pays again. The bandit's GRU and lr won jaxppo's search (bench/results/zoo/search,
# 8 seeds at 500k): 6.9 [5.6, 7.8] goals an episode, where the defaults' MLP reaches 2.2.
PRESETS["PointRobot-misc"] = PRESETS["BernoulliBandit-misc"].replace(env_id="PointRobot-misc")

# MinAtar's 10 x 10 x C grids: MinAtar's own network (Young & Tian 2019: one 3x3 conv of 16
# channels, then 128 relu units), here one torso under both heads, with gymnax-blines' PPO
# batch for MinAtar (64 envs x 128 steps, 8 minibatches, 4 epochs, lr 5e-4), annealed, gamma
# 0.99. Measured in the zoo (2M steps, 8 seeds); Breakout's entropy bonus and the longer
# budgets of Breakout, Freeway and SpaceInvaders are their own, below.
for _game in ("Asterix", "Breakout", "Freeway", "Seaquest", "SpaceInvaders"):
    PRESETS[f"{_game}-MinAtar"] = Config(
        env_id=f"{_game}-MinAtar",
        num_envs=64,
        num_steps=128,
        total_timesteps=2_000_000,
        num_minibatches=8,
        update_epochs=4,
        encoder="cnn",
        hidden_sizes=(128,),
        activation="relu",
        shared_encoder=True,
        learning_rate=5e-4,
    )
# Breakout's policy settles on a few bricks (0.26 nats of entropy left at 2M steps with 0.01);
# ten times the entropy bonus won jaxppo's search (bench/results/zoo/search, 8 seeds at 2M):
# 19.9 [15.5, 24.4] against 6.6 [6.4, 8.0].
PRESETS["Breakout-MinAtar"] = PRESETS["Breakout-MinAtar"].replace(ent_coef=0.1)
# Asterix: the same bonus steadied its seeds in jaxppo's search (8 seeds at 2M): 8.7 [8.0,
# 10.3], seeds 7.8 to 10.7, against 6.8 [5.4, 10.0], seeds 3.8 to 14.2. SpaceInvaders (37.7
# against 64.7) and Seaquest (3.0 against 4.5) lost with it and keep 0.01.
PRESETS["Asterix-MinAtar"] = PRESETS["Asterix-MinAtar"].replace(ent_coef=0.1)
# Three curves still rose at 2M steps, where they evaluated short of gymnax-blines' 10M
# figures: Breakout 23.3 [17.5, 32.3] (28), Freeway 55.1 [52.3, 57.0] (58), SpaceInvaders
# 101.2 [64.2, 145.2] (131). At 4M they evaluate at 27.3 [21.7, 31.0], 62.8 [61.2, 63.8] and
# 152.5 [147.0, 157.2] (the zoo, 8 seeds). Breakout, still rising at 4M, trains 6M steps:
# 40.8 [26.0, 53.2].
for _game in ("Breakout", "Freeway", "SpaceInvaders"):
    PRESETS[f"{_game}-MinAtar"] = PRESETS[f"{_game}-MinAtar"].replace(total_timesteps=4_000_000)
PRESETS["Breakout-MinAtar"] = PRESETS["Breakout-MinAtar"].replace(total_timesteps=6_000_000)


def preset(env_id: str) -> Config:
    """A config known to learn ``env_id`` (`PRESETS`), else the defaults with that env."""
    return PRESETS.get(env_id, Config(env_id=env_id))


# What `preset(env_id)` reaches, as bench/zoo.py measured it (bench/results/zoo/zoo.md, 8 seeds):
# env id -> (IQM of the final training return, env steps per seed). `jaxppo envs` shows it; a
# test keeps it equal to the zoo's results file.
MEASURED: dict[str, tuple[float, int]] = {
    "CartPole-v1": (500.0, 499_712),
    "Pendulum-v1": (-163.9, 999_424),
    "Acrobot-v1": (-77.1, 999_424),
    "Catch-bsuite": (1.0, 499_712),
    "MemoryChain-bsuite": (1.0, 48_000),
    "MountainCarContinuous-v0": (44.1, 20_000),
    "DeepSea-bsuite": (1.0, 499_712),
    "UmbrellaChain-bsuite": (1.0, 499_712),
    "DiscountingChain-bsuite": (1.0, 499_712),
    "SimpleBandit-bsuite": (0.5, 499_712),
    "FourRooms-misc": (1.0, 499_712),
    "MetaMaze-misc": (6.9, 499_712),
    "PointRobot-misc": (6.5, 499_200),
    "GaussianBandit-misc": (0.0, 499_712),
    "Reacher-misc": (18.5, 499_712),
    "Swimmer-misc": (435.5, 499_712),
    "MountainCar-v0": (-108.9, 999_936),
    "BernoulliBandit-misc": (89.3, 499_200),
    "navix/Navix-Empty-Random-8x8-v0": (1.0, 1_048_576),
    "navix/Navix-DoorKey-8x8-v0": (0.0, 499_712),
    "craftax/Craftax-Classic-Symbolic-v1": (4.6, 1_048_576),
    "FrozenLake-misc": (0.7, 499_712),
    "Pong-misc": (875.7, 499_712),
    "Seaquest-MinAtar": (4.5, 1_998_848),
    "Breakout-MinAtar": (36.3, 5_996_544),
    "SpaceInvaders-MinAtar": (123.0, 3_997_696),
    "Freeway-MinAtar": (62.2, 3_997_696),
    "Asterix-MinAtar": (8.7, 1_998_848),
    "xminigrid/MiniGrid-DoorKey-5x5": (1.0, 1_048_576),
    "jumanji/Snake-v1": (19.1, 1_998_848),
    "playground/CartpoleBalance": (999.2, 1_996_800),
}

# Environments where PPO, as configured here, does not reach a good score, and why: listed so
# that nobody takes them for a bug (bench/results/zoo/zoo.md has their rows).
KNOWN_FAILURES: dict[str, str] = {
    "SimpleBandit-bsuite": (
        "gymnax shuffles the arms at every reset and shows a constant observation, so no "
        "policy beats the mean arm, 0.5"),
    "GaussianBandit-misc": (
        "a meta-learning bandit: the second arm's mean is drawn per episode, mostly below "
        "the first arm's 0. One pull shows it (its pulls vary by 0.1), and the observation "
        "holds the last action, its reward and the time, so pulling the second arm first and "
        "keeping to it while it pays is worth about 7.2 an episode (-1 for the first pull, "
        "then 99 x E[max(mean, 0)] = 99 x 0.083). PPO keeps to the first arm (0) instead: "
        "with the defaults' MLP, and with the bandit's GRU preset at lr 1e-3 and 3e-3 and "
        "with entropy bonuses 0.05 and 0.2 (search/GaussianBandit-misc*.md, 8 seeds at 500k)"),
    "navix/Navix-DoorKey-8x8-v0": (
        "navix.make ends episodes at 100 steps, and in them random actions pick up the "
        "key, open the door and reach the goal in 0.02% of episodes, so PPO hardly sees a "
        "reward: 0.0 with the defaults and with navix's own PPO settings (1M steps). "
        "navix's published rejax curve reaches 0.96, from pinned git commits; the packaged "
        "rejax 0.1.3 with the same settings on navix 0.7.4 ends at 0.002 over 8 seeds "
        "(bench/results/navix_doorkey.md). With the Empty-Random-8x8 preset's settings and "
        "an entropy bonus of 0.05, 6 of 8 seeds find the goal by 4M steps, but the IQM is "
        "0.5 [0.1, 0.8] (search/navix_Navix-DoorKey-8x8-v0_*.md)"),
}
