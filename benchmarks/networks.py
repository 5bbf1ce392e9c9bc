"""sparring's CNN and LSTM policies against Stable-Baselines3's in one run: same tasks, settings and shapes.

- **CNN**: PPO on RedSquare (tests/toy_envs.py: which quadrant of a noisy 64x64 RGB frame holds the red
  square), sparring's ``nature_cnn`` against SB3's ``CnnPolicy`` (its NatureCNN): the same three
  convolutions, a 256-wide encoding, one 256-wide tanh layer per head, the encoder shared by actor and
  critic on both sides, uint8 frames scaled by 1/255 on both sides.
- **LSTM**: PPO on CueRecall (a cue seen 5 decisions before the decision that counts; chance 0.5),
  sparring with ``memory`` against sb3-contrib's ``RecurrentPPO``: one LSTM of 16 units shared by actor
  and critic (``shared_lstm``), 64-64 tanh heads, sequences of 8. The same PPO without memory is the
  floor: no policy without memory can beat 0.5.

Runs are interleaved per seed (sparring, then the peer) so machine noise hits both alike; throughput is
env steps per second of the whole ``learn`` (acting and updating), the ratio of the medians over seeds.
Success is the greedy policy's over 500 fresh episodes. The CNN's **compute floor** is the network's work
alone at the same shapes (a forward per env step, then forward, backward and Adam per minibatch, no env
and no RL bookkeeping): no PPO can run the CNN faster than that, so floor / SB3 bounds the ratio.

    python benchmarks/networks.py [--seeds 0 1 2] [--cnn-steps 20000] [--lstm-steps 30000] [--threads 1]

Last line: ``networks cnn_throughput_ratio=<..> lstm_throughput_ratio=<..> lstm_success=<..>
mlp_success_on_memory=<..>`` (the successes are sparring's medians).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import toy_envs  # noqa: E402,F401  (registers RedSquare-v0 and CueRecall-v0)

CNN = dict(env="RedSquare-v0", env_kwargs={"size": 64}, num_envs=8, n_steps=64, batch_size=128, n_epochs=4,
           learning_rate=3e-4, gamma=0.0, width=256)
LSTM = dict(env="CueRecall-v0", env_kwargs={}, num_envs=16, n_steps=32, batch_size=128, n_epochs=4,
            learning_rate=1e-3, gamma=0.99, hidden=[64, 64], memory_size=32, sequence_length=8)
EPISODES = 500


def _sparring(task: dict, seed: int, steps: int, **network) -> tuple[float, float]:
    """(env steps per second of learn, greedy success) for sparring PPO with ``network`` settings."""
    from sparring.agents import PPO
    from sparring.agents.evaluation import evaluate
    from sparring.envs.gymnasium import GymnasiumEnv

    def env(copies: int) -> GymnasiumEnv:
        return GymnasiumEnv(task["env"], num_envs=copies, env_kwargs=task["env_kwargs"])

    model = PPO(env(task["num_envs"]), seed=seed, n_steps=task["n_steps"], batch_size=task["batch_size"],
                n_epochs=task["n_epochs"], learning_rate=task["learning_rate"], gamma=task["gamma"],
                lr_schedule="constant", **network)
    start = time.perf_counter()
    model.learn(steps)
    rate = model.num_steps / (time.perf_counter() - start)
    returns = next(iter(evaluate(model, env(50), EPISODES, seed=1000 + seed).values()))
    return rate, float(returns.mean())


def _sb3_success(model, task: dict, seed: int, recurrent: bool) -> float:
    """The SB3 model's greedy success over EPISODES one-at-a-time episodes (with its LSTM state carried)."""
    env = gym.make(task["env"], **task["env_kwargs"])
    wins = 0.0
    for episode in range(EPISODES):
        obs, _ = env.reset(seed=10_000 * seed + episode)
        state, start, done = None, np.ones(1, bool), False
        while not done:
            if recurrent:
                action, state = model.predict(obs[None], state=state, episode_start=start, deterministic=True)
                start = np.zeros(1, bool)
            else:
                action, _ = model.predict(obs[None], deterministic=True)
            obs, reward, terminated, truncated, _ = env.step(int(action[0]))
            wins += reward
            done = terminated or truncated
    return wins / EPISODES


def cnn_sb3(seed: int, steps: int) -> tuple[float, float]:
    from stable_baselines3 import PPO as SB3PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.torch_layers import NatureCNN

    t = CNN
    env = make_vec_env(t["env"], n_envs=t["num_envs"], seed=seed, env_kwargs=t["env_kwargs"])
    model = SB3PPO("CnnPolicy", env, seed=seed, device="cpu", n_steps=t["n_steps"], batch_size=t["batch_size"],
                   n_epochs=t["n_epochs"], learning_rate=t["learning_rate"], gamma=t["gamma"],
                   policy_kwargs=dict(features_extractor_class=NatureCNN,
                                      features_extractor_kwargs=dict(features_dim=t["width"]),
                                      net_arch=dict(pi=[t["width"]], vf=[t["width"]]), activation_fn=torch.nn.Tanh))
    start = time.perf_counter()
    model.learn(steps)
    rate = model.num_timesteps / (time.perf_counter() - start)
    return rate, _sb3_success(model, t, seed, recurrent=False)


def lstm_sb3(seed: int, steps: int) -> tuple[float, float]:
    from sb3_contrib import RecurrentPPO
    from stable_baselines3.common.env_util import make_vec_env

    t = LSTM
    env = make_vec_env(t["env"], n_envs=t["num_envs"], seed=seed)
    model = RecurrentPPO("MlpLstmPolicy", env, seed=seed, device="cpu", n_steps=t["n_steps"],
                         batch_size=t["batch_size"], n_epochs=t["n_epochs"], learning_rate=t["learning_rate"],
                         gamma=t["gamma"],
                         policy_kwargs=dict(lstm_hidden_size=t["memory_size"] // 2, n_lstm_layers=1, shared_lstm=True,
                                            enable_critic_lstm=False, net_arch=dict(pi=t["hidden"], vf=t["hidden"]),
                                            activation_fn=torch.nn.Tanh))
    start = time.perf_counter()
    model.learn(steps)
    rate = model.num_timesteps / (time.perf_counter() - start)
    return rate, _sb3_success(model, t, seed, recurrent=True)


def cnn_floor(steps: int) -> float:
    """Env steps per second of the CNN's own work in ``steps`` env steps of :data:`CNN` PPO (see the docstring)."""
    from sparring.agents.policy import BehaviourPolicy
    from sparring.spec import BehaviourSpec

    t = CNN
    env = gym.make(t["env"], **t["env_kwargs"])
    policy = BehaviourPolicy(BehaviourSpec("b", env.observation_space, env.action_space), [t["width"]], "tanh",
                             vis_encode_type="nature_cnn")
    optimizer = torch.optim.Adam(policy.parameters(), lr=t["learning_rate"], eps=1e-5, fused=True)
    size = int(np.prod(env.observation_space.shape))
    acting = torch.rand(t["num_envs"], size) * 255
    rollout = torch.rand(t["n_steps"] * t["num_envs"], size) * 255
    start = time.perf_counter()
    for _ in range(steps // (t["n_steps"] * t["num_envs"])):
        with torch.no_grad():
            for _ in range(t["n_steps"]):
                policy.features(acting)
        for _ in range(t["n_epochs"]):
            for batch in rollout.split(t["batch_size"]):
                out, value = policy.features(batch)
                optimizer.zero_grad(set_to_none=True)
                (out.logsumexp(1).mean() + value.square().mean()).backward()
                optimizer.step()
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--cnn-steps", type=int, default=20_000)
    parser.add_argument("--lstm-steps", type=int, default=30_000)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} torch thread(s), seeds {args.seeds}")
    cnn_net = dict(vis_encode_type="nature_cnn", hidden_sizes=[CNN["width"]], activation="tanh")
    lstm_net = dict(hidden_sizes=LSTM["hidden"], activation="tanh",
                    memory={"memory_size": LSTM["memory_size"], "sequence_length": LSTM["sequence_length"]})
    runs = {
        "cnn sparring": lambda seed: _sparring(CNN, seed, args.cnn_steps, **cnn_net),
        "cnn sb3": lambda seed: cnn_sb3(seed, args.cnn_steps),
        "cnn compute floor": lambda seed: (cnn_floor(args.cnn_steps), float("nan")),
        "lstm sparring": lambda seed: _sparring(LSTM, seed, args.lstm_steps, **lstm_net),
        "lstm sb3-contrib": lambda seed: lstm_sb3(seed, args.lstm_steps),
        "mlp sparring": lambda seed: _sparring(LSTM, seed, args.lstm_steps, hidden_sizes=LSTM["hidden"],
                                               activation="tanh"),
    }
    print(f"{'run':<18} {'seed':>4} {'env steps/s':>12} {'success':>8}")
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
    for seed in args.seeds:
        for name, run in runs.items():
            rate, success = run(seed)
            results[name].append((rate, success))
            print(f"{name:<18} {seed:>4} {rate:>12,.0f} {success:>8.3f}", flush=True)
    median = {name: np.median(np.array(rows), axis=0) for name, rows in results.items()}
    print(f"\n{'run':<18} {'median steps/s':>15} {'median success':>15}")
    for name, (rate, success) in median.items():
        print(f"{name:<18} {rate:>15,.0f} {success:>15.3f}")
    print(f"the CNN's compute floor runs {median['cnn compute floor'][0] / median['cnn sb3'][0]:.2f}x SB3's "
          "throughput: no PPO with this network on this machine can beat SB3 by more")
    print(f"networks cnn_throughput_ratio={median['cnn sparring'][0] / median['cnn sb3'][0]:.3f} "
          f"lstm_throughput_ratio={median['lstm sparring'][0] / median['lstm sb3-contrib'][0]:.3f} "
          f"lstm_success={median['lstm sparring'][1]:.3f} mlp_success_on_memory={median['mlp sparring'][1]:.3f}")


if __name__ == "__main__":
    main()
