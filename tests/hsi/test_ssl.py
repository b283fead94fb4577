"""SSL pieces: MoCo queue and momentum update, DINO loss and centre, MAE masking and loss,
spatial augmentations; one compiled step of each method (tiny models)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxgeo.hsi.augment import augment_batch, crop_matrix, random_resized_crop
from jaxgeo.hsi.backbones import make_backbone
from jaxgeo.hsi.ssl import (
    dino_loss,
    ema,
    enqueue,
    grouped_forward,
    infonce_logits,
    mae_loss,
    make_method,
    n_visible,
    patchify,
    random_masking,
    update_center,
)
from jaxgeo.train import init_train_state, make_train_step, split_module


def test_enqueue_is_a_ring_buffer():
    queue = jnp.zeros((6, 2), jnp.float32)
    ptr = jnp.zeros((), jnp.int32)
    k1 = jnp.ones((3, 2), jnp.float32)
    queue, ptr = enqueue(queue, ptr, k1)
    assert int(ptr) == 3
    np.testing.assert_array_equal(np.asarray(queue[:3]), 1.0)
    np.testing.assert_array_equal(np.asarray(queue[3:]), 0.0)
    queue, ptr = enqueue(queue, ptr, 2 * k1)
    queue, ptr = enqueue(queue, ptr, 3 * k1)  # wraps: overwrites the oldest keys
    assert int(ptr) == 3
    np.testing.assert_array_equal(np.asarray(queue[:, 0]), [3, 3, 3, 2, 2, 2])


def test_momentum_update_is_exact_ema():
    teacher = {"w": jnp.asarray([1.0, 2.0], jnp.float32)}
    student = {"w": jnp.asarray([3.0, -2.0], jnp.float32)}
    out = ema(teacher, student, 0.75)
    np.testing.assert_allclose(np.asarray(out["w"]), [1.5, 1.0], rtol=0, atol=0)
    moco = make_method("moco", momentum=0.9)
    after = moco.make_after_update()
    state = after(student, {"key_params": teacher, "queue": 0}, jnp.zeros((), jnp.int32))
    np.testing.assert_allclose(np.asarray(state["key_params"]["w"]), [1.2, 1.6], rtol=1e-6)


def test_infonce_logits_positive_first():
    rng = np.random.default_rng(0)
    q, k = (jnp.asarray(rng.normal(size=(4, 3)).astype(np.float32)) for _ in range(2))
    queue = jnp.asarray(rng.normal(size=(5, 3)).astype(np.float32))
    logits = np.asarray(infonce_logits(q, k, queue, 0.1))
    np.testing.assert_allclose(logits[:, 0], np.sum(np.asarray(q * k), axis=1) / 0.1, rtol=1e-5)
    np.testing.assert_allclose(logits[:, 1:], np.asarray(q @ queue.T) / 0.1, rtol=1e-5)


def test_dino_loss_and_center_update():
    rng = np.random.default_rng(1)
    s = rng.normal(size=(4, 3, 5)).astype(np.float32)  # 2 global + 2 local crops
    t = rng.normal(size=(2, 3, 5)).astype(np.float32)
    c = rng.normal(size=5).astype(np.float32)
    got = float(dino_loss(jnp.asarray(s), jnp.asarray(t), jnp.asarray(c), 0.1, 0.04))

    def softmax(z):
        e = np.exp(z - z.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)

    terms = [
        np.mean(-np.sum(softmax((t[i] - c) / 0.04) * np.log(softmax(s[j] / 0.1)), axis=-1))
        for i in range(2)
        for j in range(4)
        if i != j
    ]
    assert got == pytest.approx(np.mean(terms), rel=1e-5)
    assert len(terms) == 6
    new = np.asarray(update_center(jnp.asarray(c), jnp.asarray(t), 0.9))
    np.testing.assert_allclose(new, 0.9 * c + 0.1 * t.mean(axis=(0, 1)), rtol=1e-6)


def test_mae_mask_ratio_exact_and_restore():
    b, n = 3, 64
    keep, restore, mask = random_masking(jax.random.key(0), b, n, 0.9)
    n_keep = n_visible(n, 0.9)
    assert n_keep == 6 and keep.shape == (b, 6)
    mask = np.asarray(mask)
    np.testing.assert_array_equal(mask.sum(axis=1), n - n_keep)  # 58 of 64 in every sample
    for i in range(b):
        np.testing.assert_array_equal(np.flatnonzero(mask[i] == 0), np.sort(np.asarray(keep[i])))
    assert n_visible(32 * 32, 0.9) == 102  # 128 x 128 patches of 4: 922 of 1024 masked


def test_mae_loss_only_on_masked_patches():
    rng = np.random.default_rng(2)
    pred = jnp.asarray(rng.normal(size=(2, 8, 6)).astype(np.float32))
    target = jnp.asarray(rng.normal(size=(2, 8, 6)).astype(np.float32))
    mask = jnp.asarray((rng.random((2, 8)) < 0.7).astype(np.float32))
    g = np.asarray(jax.grad(mae_loss)(pred, target, mask))
    assert np.all(g[np.asarray(mask) == 0] == 0.0)
    assert np.all(np.abs(g[np.asarray(mask) == 1]).sum(-1) > 0)
    per_patch = np.mean((np.asarray(pred) - np.asarray(target)) ** 2, -1)
    m = np.asarray(mask) == 1
    assert float(mae_loss(pred, target, mask)) == pytest.approx(per_patch[m].mean(), rel=1e-6)


def test_patchify_order():
    x = jnp.arange(2 * 4 * 4 * 3, dtype=jnp.float32).reshape(2, 4, 4, 3)
    p = np.asarray(patchify(x, 2))
    assert p.shape == (2, 4, 12)
    np.testing.assert_array_equal(p[1, 1].reshape(2, 2, 3), np.asarray(x[1, 0:2, 2:4]))


def test_augmentations_are_spatial_only():
    rng = np.random.default_rng(3)
    img = jnp.asarray(rng.normal(size=(6, 6, 4)).astype(np.float32))
    # Full-size crop of aspect 1 without flips is the identity.
    same = random_resized_crop(jax.random.key(0), img, 6, (1.0, 1.0), (1.0, 1.0), flips=False)
    np.testing.assert_allclose(np.asarray(same), np.asarray(img), atol=1e-6)
    np.testing.assert_allclose(np.asarray(crop_matrix(0.0, 6.0, 6, 6, jnp.float32)), np.eye(6))
    # With flips, the output is one of the eight symmetries of the square.
    a = np.asarray(img)
    d4 = [np.rot90(b, k, axes=(0, 1)) for b in (a, a[:, ::-1]) for k in range(4)]
    crop = jax.jit(lambda k: random_resized_crop(k, img, 6, (1.0, 1.0), (1.0, 1.0)))
    for seed in range(4):
        out = np.asarray(crop(jax.random.key(seed)))
        assert any(np.allclose(out, d, atol=1e-6) for d in d4)
    # Every pixel's spectrum is a convex combination of input spectra (no spectral change):
    # a constant spectrum stays that spectrum.
    const = jnp.broadcast_to(jnp.asarray([0.1, 0.5, -2.0], jnp.float32), (2, 8, 8, 3))
    out = np.asarray(augment_batch(jax.random.key(5), const, 4, (0.2, 1.0)))
    np.testing.assert_allclose(out, np.broadcast_to([0.1, 0.5, -2.0], out.shape), rtol=1e-6)


_TINY = {
    "moco": ({"queue_size": 16, "hidden": 32, "dim": 8}, "spec-resnet-tiny"),
    "dino": ({"out_dim": 16, "hidden": 16, "bottleneck": 8, "n_local": 2}, "spec-vit-tiny"),
    "mae": ({"dec_width": 16, "dec_depth": 1, "dec_heads": 2}, "spec-vit-tiny"),
}


@pytest.mark.long
@pytest.mark.parametrize("name", ["moco", "dino", "mae"])
def test_method_step_updates_state(name):
    settings, bb = _TINY[name]
    method = make_method(name, **settings)
    net = method.build(make_backbone(bb, 80, rngs=nnx.Rngs(0)), nnx.Rngs(1))
    mdef, params, rest = split_module(net)
    tx = optax.adam(1e-3)
    ts0 = init_train_state(params, method.init_state(params, rest, jax.random.key(2)), tx)
    step = jax.jit(make_train_step(method.make_loss(mdef), tx, method.make_after_update(10)))
    x = jax.random.normal(jax.random.key(0), (8, 16, 16, 80), jnp.float32)
    ts, metrics = step(ts0, {"x": x}, jax.random.key(1))
    assert np.isfinite(float(metrics["loss"]))
    if name == "moco":
        assert int(ts["state"]["queue_ptr"]) == 8
        np.testing.assert_array_equal(
            np.asarray(ts["state"]["queue"][8:]), np.asarray(ts0["state"]["queue"][8:])
        )
        m = method.momentum
        for k0, p1, k1 in zip(
            jax.tree_util.tree_leaves(ts0["state"]["key_params"]),
            jax.tree_util.tree_leaves(ts["params"]),
            jax.tree_util.tree_leaves(ts["state"]["key_params"]),
            strict=True,
        ):
            np.testing.assert_allclose(
                np.asarray(k1), m * np.asarray(k0) + (1 - m) * np.asarray(p1), rtol=1e-5, atol=1e-7
            )
    if name == "dino":
        assert not np.allclose(np.asarray(ts["state"]["center"]), 0.0)


def _tiny_moco_net(bn_group):
    method = make_method("moco", queue_size=16, hidden=32, dim=8, bn_group=bn_group)
    net = method.build(make_backbone("resnet-tiny", 4, rngs=nnx.Rngs(0)), nnx.Rngs(1))
    return method, *split_module(net)


def test_grouped_batch_norm_keeps_groups_apart():
    """Per-group batch statistics: a group's outputs do not depend on the other group's
    samples (they do with one group), equal the model run on that group alone, and the running
    statistics are the groups' mean."""
    _, mdef, params, rest = _tiny_moco_net(2)
    x = jax.random.normal(jax.random.key(0), (4, 8, 8, 4), jnp.float32)
    y = x.at[3].multiply(3.0)  # a sample of the second group changed
    two = jax.jit(lambda v: grouped_forward(mdef, params, rest, v, 2))
    one = jax.jit(lambda v: grouped_forward(mdef, params, rest, v, 1))
    out_x, rest_x = two(x)
    out_y, _ = two(y)
    np.testing.assert_array_equal(np.asarray(out_x[:2]), np.asarray(out_y[:2]))
    one_x, _ = one(x)
    one_y, _ = one(y)
    assert not np.allclose(np.asarray(one_x[:2]), np.asarray(one_y[:2]))
    parts = [one(x[i : i + 2]) for i in (0, 2)]
    np.testing.assert_allclose(
        np.asarray(out_x), np.concatenate([np.asarray(o) for o, _ in parts]), rtol=1e-5, atol=1e-6
    )
    for r, r0, r1 in zip(jax.tree_util.tree_leaves(rest_x),
                         *(jax.tree_util.tree_leaves(r) for _, r in parts), strict=True):  # fmt: skip
        np.testing.assert_allclose(np.asarray(r), (np.asarray(r0) + np.asarray(r1)) / 2, rtol=1e-5)


def test_moco_shuffle_bn_groups():
    method = make_method("moco", bn_group=32)
    assert method.groups(16) == 1 and method.groups(32) == 1 and method.groups(256) == 8
    assert make_method("moco", bn_group=0).groups(256) == 1
    with pytest.raises(ValueError, match="bn_group=32.*multiple"):
        method.groups(80)


def test_moco_shuffled_keys_are_restored_to_order():
    """Shuffle BN: the key encoder runs on the batch in a random order, in groups, and its
    outputs are put back in the batch order, so the positive logit pairs each query with the
    key of its own sample (putting them back wrongly changes the loss)."""
    method, mdef, params, rest = _tiny_moco_net(2)
    state = method.init_state(params, rest, jax.random.key(2))
    x = jax.random.normal(jax.random.key(0), (4, 8, 8, 4), jnp.float32)
    key = jax.random.key(5)
    loss, _ = jax.jit(method.make_loss(mdef))(params, state, {"x": x}, key)
    k1, k2 = jax.random.split(key)
    v1 = augment_batch(k1, x, 8, method.crop_scale)
    v2 = augment_batch(k2, x, 8, method.crop_scale)
    perm = jax.random.permutation(jax.random.fold_in(key, 1), 4)
    assert not np.array_equal(np.asarray(perm), np.arange(4))
    q, _ = jax.jit(lambda v: grouped_forward(mdef, params, rest, v, 2))(v1)
    k_perm, _ = jax.jit(
        lambda v: grouped_forward(mdef, state["key_params"], state["key_rest"], v, 2)
    )(v2[perm])

    def ce(k):
        logits = infonce_logits(q, k, state["queue"], method.temperature)
        return float(
            optax.softmax_cross_entropy_with_integer_labels(logits, jnp.zeros(4, int)).mean()
        )

    assert float(loss) == pytest.approx(ce(k_perm[jnp.argsort(perm)]), rel=1e-5)
    assert float(loss) != pytest.approx(ce(k_perm), rel=1e-3)


def test_dino_teacher_temperature_warmup_and_frozen_last_layer():
    method = make_method("dino", out_dim=16, hidden=16, bottleneck=8, n_local=0,
                         warmup_teacher_temp=0.02, teacher_temp=0.06,
                         teacher_temp_warmup=0.5, freeze_last_layer=0.2)  # fmt: skip
    temps = [float(method.schedules(jnp.int32(s), 10)[0]) for s in range(10)]
    np.testing.assert_allclose(temps, [0.02, 0.028, 0.036, 0.044, 0.052] + [0.06] * 5, rtol=1e-6)
    frozen = [float(method.schedules(jnp.int32(s), 10)[1]) for s in range(10)]
    assert frozen == [1.0, 1.0] + [0.0] * 8
    net = method.build(make_backbone("vit-tiny", 4, rngs=nnx.Rngs(0)), nnx.Rngs(1))
    mdef, params, rest = split_module(net)
    state = method.init_state(params, rest, jax.random.key(2), total_steps=10)
    assert float(state["teacher_temp"]) == pytest.approx(0.02)
    x = jax.random.normal(jax.random.key(0), (2, 8, 8, 4), jnp.float32)
    grad = jax.jit(
        jax.grad(lambda p, st: method.make_loss(mdef)(p, st, {"x": x}, jax.random.key(1))[0])
    )
    g_frozen = grad(params, state)
    assert float(jnp.abs(g_frozen["head"]["last"]).max()) == 0.0
    g_free = grad(params, {**state, "freeze_last": jnp.float32(0.0)})
    assert float(jnp.abs(g_free["head"]["last"]).max()) > 0.0
    # the rest of the network still learns while the last layer is frozen
    np.testing.assert_allclose(
        np.asarray(g_frozen["head"]["mlp"]["layers"]["0"]["kernel"]),
        np.asarray(g_free["head"]["mlp"]["layers"]["0"]["kernel"]),
    )
    after = method.make_after_update(10)(params, state, jnp.int32(1))  # next step is 2
    assert float(after["freeze_last"]) == 0.0
    assert float(after["teacher_temp"]) == pytest.approx(0.036)
