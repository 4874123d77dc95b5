"""Update speed of orl's peers at orl's benchmark shapes, one thread each (pinned to one CPU).

Run by `cargo xtask speed` inside the virtual environment it creates (d3rlpy 2.8.1, jax[cpu]).
Prints one JSON object: {"d3rlpy": {algo: updates_per_s}, "jax": {algo: updates_per_s},
"versions": {...}}.

Shapes: HalfCheetah (obs 17, act 6), batch 256 (BCQ 100), 2x256 networks, CQL with 10
sampled actions, BCQ with 10 and a 750x750 VAE (the papers' values and orl's; d3rlpy's BCQ
defaults are 100 and 2x256). d3rlpy is timed through `fit` (sampling included, as its users run it); the
JAX updates are jitted functions in the style of JAX-CORL (pure jax.numpy MLPs and Adam, one
jitted call per update, the actor of TD3+BC every second update).
"""

import json
import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault(
    "XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
)
# The flags above do not hold XLA's CPU runtime to one thread: measured on an idle 2-core
# machine (2026-12-02), jax 0.10.2 spent 22.5 s of CPU in 15.4 s of wall time, and its IQL
# update ran at 450 updates/s free against 261 pinned to one core. So the whole process is
# pinned to one CPU before torch or jax start their thread pools: one core each, as orl
# (one thread, RAYON_NUM_THREADS=1) gets.
if hasattr(os, "sched_setaffinity"):
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})

import numpy as np

OBS, ACT, HID = 17, 6, 256


def dataset(n=20_000, seed=0):
    rng = np.random.default_rng(seed)
    obs = rng.standard_normal((n, OBS)).astype(np.float32)
    act = rng.uniform(-1, 1, (n, ACT)).astype(np.float32)
    rew = rng.standard_normal(n).astype(np.float32)
    term = np.zeros(n, dtype=np.float32)
    tout = np.zeros(n, dtype=np.float32)
    tout[999::1000] = 1.0
    return obs, act, rew, term, tout


def d3rlpy_speeds(algos, steps):
    import torch
    import d3rlpy
    from d3rlpy.logging import NoopAdapterFactory

    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    obs, act, rew, term, tout = dataset()
    ds = d3rlpy.dataset.MDPDataset(obs, act, rew, term, tout)
    configs = {
        "bc": lambda: d3rlpy.algos.BCConfig(batch_size=256),
        "td3bc": lambda: d3rlpy.algos.TD3PlusBCConfig(batch_size=256),
        "iql": lambda: d3rlpy.algos.IQLConfig(batch_size=256),
        "cql": lambda: d3rlpy.algos.CQLConfig(batch_size=256, n_action_samples=10),
        # The paper's 10 sampled actions (d3rlpy's default is 100) and its 750x750 VAE
        # (d3rlpy's default imitator is 2x256), as orl: the same work on both sides.
        "bcq": lambda: d3rlpy.algos.BCQConfig(
            batch_size=100,
            n_action_samples=10,
            imitator_encoder_factory=d3rlpy.models.VectorEncoderFactory(hidden_units=[750, 750]),
        ),
    }
    out = {}
    for name in algos:
        algo = configs[name]().create(device="cpu:0")
        algo.build_with_dataset(ds)
        n = steps[name]
        kw = dict(show_progress=False, logger_adapter=NoopAdapterFactory(), save_interval=10**9)
        algo.fit(ds, n_steps=max(5, n // 10), n_steps_per_epoch=max(5, n // 10), **kw)
        t = time.perf_counter()
        algo.fit(ds, n_steps=n, n_steps_per_epoch=n, **kw)
        out[name] = n / (time.perf_counter() - t)
        print(f"d3rlpy {name}: {out[name]:.1f} updates/s", file=sys.stderr)
    return out, {"d3rlpy": d3rlpy.__version__, "torch": torch.__version__}


def jax_speeds(algos, steps):
    import jax
    import jax.numpy as jnp

    def init_mlp(key, sizes):
        params = []
        for i, o in zip(sizes[:-1], sizes[1:]):
            key, k1, k2 = jax.random.split(key, 3)
            b = 1.0 / np.sqrt(i)
            params.append(
                (jax.random.uniform(k1, (i, o), minval=-b, maxval=b), jax.random.uniform(k2, (o,), minval=-b, maxval=b))
            )
        return params

    def mlp(params, x):
        for w, b in params[:-1]:
            x = jax.nn.relu(x @ w + b)
        w, b = params[-1]
        return x @ w + b

    def adam_init(p):
        z = jax.tree_util.tree_map(jnp.zeros_like, p)
        return (z, z, jnp.zeros((), jnp.int32))

    def adam(p, g, st, lr=3e-4, b1=0.9, b2=0.999, eps=1e-8):
        m, v, t = st
        t = t + 1
        m = jax.tree_util.tree_map(lambda m, g: b1 * m + (1 - b1) * g, m, g)
        v = jax.tree_util.tree_map(lambda v, g: b2 * v + (1 - b2) * g * g, v, g)
        c1, c2 = 1 - b1**t, 1 - b2**t
        p = jax.tree_util.tree_map(lambda p, m, v: p - lr * (m / c1) / (jnp.sqrt(v / c2) + eps), p, m, v)
        return p, (m, v, t)

    polyak = lambda t, s, tau=0.005: jax.tree_util.tree_map(lambda t, s: (1 - tau) * t + tau * s, t, s)
    key = jax.random.PRNGKey(0)
    obs, act, rew, term, _ = dataset()
    rng = np.random.default_rng(1)
    batches = []
    for _ in range(32):
        i = rng.integers(0, len(obs) - 1, 256)
        batches.append(tuple(jnp.asarray(x) for x in (obs[i], act[i], rew[i], obs[i + 1], term[i])))
    out = {}
    k = jax.random.split(key, 8)
    q_sizes = [OBS + ACT, HID, HID, 1]

    def twin_q(qs, s, a):
        x = jnp.concatenate([s, a], -1)
        return jnp.stack([mlp(q, x)[:, 0] for q in qs])

    if "td3bc" in algos:
        actor = init_mlp(k[0], [OBS, HID, HID, ACT])
        critic = [init_mlp(k[1], q_sizes), init_mlp(k[2], q_sizes)]
        state = dict(actor=actor, actor_t=actor, critic=critic, critic_t=critic, a_opt=adam_init(actor), c_opt=adam_init(critic))

        @jax.jit
        def critic_step(st, batch, key):
            s, a, r, s2, d = batch
            noise = jnp.clip(0.2 * jax.random.normal(key, a.shape), -0.5, 0.5)
            a2 = jnp.clip(jnp.tanh(mlp(st["actor_t"], s2)) + noise, -1, 1)
            y = r + 0.99 * (1 - d) * twin_q(st["critic_t"], s2, a2).min(0)
            loss = lambda c: ((twin_q(c, s, a) - y) ** 2).mean(1).sum()
            g = jax.grad(loss)(st["critic"])
            c, opt = adam(st["critic"], g, st["c_opt"])
            return dict(st, critic=c, c_opt=opt)

        @jax.jit
        def actor_step(st, batch):
            s, a, *_ = batch

            def loss(p):
                pi = jnp.tanh(mlp(p, s))
                q = twin_q(st["critic"], s, pi)[0]
                lam = jax.lax.stop_gradient(2.5 / jnp.abs(q).mean())
                return -lam * q.mean() + ((pi - a) ** 2).mean()

            g = jax.grad(loss)(st["actor"])
            p, opt = adam(st["actor"], g, st["a_opt"])
            return dict(st, actor=p, a_opt=opt, actor_t=polyak(st["actor_t"], p), critic_t=polyak(st["critic_t"], st["critic"]))

        def run(st, n, key):
            for i in range(n):
                key, sub = jax.random.split(key)
                b = batches[i % 32]
                st = critic_step(st, b, sub)
                if i % 2 == 0:
                    st = actor_step(st, b)
            jax.block_until_ready(st)
            return st

        state = run(state, 10, key)
        t = time.perf_counter()
        run(state, steps["td3bc"], key)
        out["td3bc"] = steps["td3bc"] / (time.perf_counter() - t)
        print(f"jax td3bc: {out['td3bc']:.1f} updates/s", file=sys.stderr)

    if "iql" in algos:
        actor = init_mlp(k[3], [OBS, HID, HID, ACT])
        log_std = jnp.zeros(ACT)
        critic = [init_mlp(k[4], q_sizes), init_mlp(k[5], q_sizes)]
        value = init_mlp(k[6], [OBS, HID, HID, 1])
        pol = (actor, log_std)
        st = dict(pol=pol, critic=critic, critic_t=critic, value=value, p_opt=adam_init(pol), c_opt=adam_init(critic), v_opt=adam_init(value))

        @jax.jit
        def iql_step(st, batch):
            s, a, r, s2, d = batch
            q_t = twin_q(st["critic_t"], s, a).min(0)

            def v_loss(v):
                u = q_t - mlp(v, s)[:, 0]
                w = jnp.where(u < 0, 0.3, 0.7)
                return (w * u**2).mean(), u

            (_, adv), g = jax.value_and_grad(v_loss, has_aux=True)(st["value"])
            v_next = mlp(st["value"], s2)[:, 0]
            value, v_opt = adam(st["value"], g, st["v_opt"])
            y = r + 0.99 * (1 - d) * v_next
            g = jax.grad(lambda c: ((twin_q(c, s, a) - y) ** 2).mean(1).sum())(st["critic"])
            critic, c_opt = adam(st["critic"], g, st["c_opt"])
            w = jnp.minimum(jnp.exp(3.0 * adv), 100.0)

            def p_loss(p):
                net, ls = p
                mean = jnp.tanh(mlp(net, s))
                ls = jnp.clip(ls, -5.0, 2.0)
                lp = (-0.5 * ((a - mean) / jnp.exp(ls)) ** 2 - ls - 0.9189385).sum(-1)
                return -(w * lp).mean()

            g = jax.grad(p_loss)(st["pol"])
            pol, p_opt = adam(st["pol"], g, st["p_opt"])
            return dict(pol=pol, critic=critic, critic_t=polyak(st["critic_t"], critic), value=value, p_opt=p_opt, c_opt=c_opt, v_opt=v_opt)

        def run(st, n):
            for i in range(n):
                st = iql_step(st, batches[i % 32])
            jax.block_until_ready(st)
            return st

        st = run(st, 10)
        t = time.perf_counter()
        run(st, steps["iql"])
        out["iql"] = steps["iql"] / (time.perf_counter() - t)
        print(f"jax iql: {out['iql']:.1f} updates/s", file=sys.stderr)
    return out, {"jax": jax.__version__}


def main():
    args = json.loads(sys.argv[1])
    steps = args["steps"]
    d3, v1 = d3rlpy_speeds(args["d3rlpy"], steps)
    jx, v2 = jax_speeds(args["jax"], steps)
    print(json.dumps({"d3rlpy": d3, "jax": jx, "versions": {**v1, **v2}}))


if __name__ == "__main__":
    main()
