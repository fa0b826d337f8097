"""networks/: shapes for any size, MINE vs its reference, gradients, legacy wiring, params."""
import math

import pytest
import torch
import torch.nn.functional as F

from config import ModelConfig, paper
from networks import HCN, HCNOutput, build_model, parameter_summary
from networks.attention import _KEY_EPS, _KSIZE, _PASTE_DIVISOR, MINE, _patches, chunked_attention
from networks.biscsm import BiSCSM, positional_embedding
from networks.blocks import DenseResidualGroup
from networks.pyramid import pyr_down
from networks.resize import pool2, upsample_to

SMALL = dict(channels=6, encoder_blocks=(2, 1, 1), attention_chunk=16)


def mine_reference(module: MINE, q: torch.Tensor, o: torch.Tensor) -> torch.Tensor:
    """Test oracle: the authors' formulation, unchunked, written independently of MINE.forward.

    Scores are a correlation of the zero-padded query embedding with every normalised key
    patch used as a conv kernel; pasting is a transposed conv with the value patches as
    kernels. Batched with grouped convolutions (one group per sample). Memory is the full
    L x h x w map, so use it on small inputs only.
    """
    batch, channels, height, width = q.shape
    inner = module.theta[0].out_channels

    def kernels(emb: torch.Tensor, size: int) -> torch.Tensor:
        # [B, size*9, L] patches -> [B*L, size, 3, 3] conv kernels
        p = _patches(emb)
        return p.transpose(1, 2).reshape(batch * p.shape[2], size, _KSIZE, _KSIZE)

    key_k = torch.cat([kernels(module.g(q), inner).view(batch, -1, inner, 3, 3),
                       kernels(module.g(o), inner).view(batch, -1, inner, 3, 3)], dim=1)
    norms = key_k.flatten(2).norm(dim=2).clamp_min(_KEY_EPS)
    key_k = (key_k / norms[..., None, None, None]).flatten(0, 1)
    val_k = torch.cat([kernels(module.f(q), channels).view(batch, -1, channels, 3, 3),
                       kernels(module.f(o), channels).view(batch, -1, channels, 3, 3)], dim=1)
    n_keys = val_k.shape[1]
    val_k = val_k.flatten(0, 1)
    theta = module.theta(q).reshape(1, batch * inner, height, width)
    scores = F.conv2d(theta, key_k, padding=1, groups=batch)  # [1, B*L, h, w]
    attn = torch.softmax(module.softmax_scale * scores.view(batch, n_keys, height, width), dim=1)
    pasted = F.conv_transpose2d(attn.reshape(1, batch * n_keys, height, width), val_k,
                                padding=1, groups=batch)
    return pasted.view(batch, channels, height, width) / _PASTE_DIVISOR + q



def small_model(seed=0, **overrides):
    torch.manual_seed(seed)
    return HCN(**{**SMALL, **overrides}).eval()


def rand_image(*shape, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(*shape, generator=gen)


# ---------------------------------------------------------------- shapes and sizes

@pytest.mark.parametrize("batch,height,width", [(1, 1, 1), (2, 7, 13), (1, 64, 64), (1, 33, 2)])
def test_outputs_have_input_size_and_are_finite(batch, height, width):
    model = small_model()
    x = rand_image(batch, 3, height, width)
    with torch.inference_mode():
        out = model(x)
    assert isinstance(out, HCNOutput)
    for name in ("bottom", "middle", "top"):
        y = getattr(out, name)
        assert y.shape == x.shape, name
        assert torch.isfinite(y).all(), name
    assert out.half is None and out.quarter is None


@pytest.mark.parametrize("height,width", [(1, 1), (9, 17), (40, 23)])
def test_branch_outputs_match_pyr_down_sizes(height, width):
    model = small_model()
    x = rand_image(2, 3, height, width)
    with torch.no_grad():
        out = model(x, branches=True)
    half = pyr_down(x)
    assert out.half.shape == half.shape
    assert out.quarter.shape == pyr_down(half).shape
    assert torch.isfinite(out.half).all() and torch.isfinite(out.quarter).all()


def test_bottom_does_not_depend_on_branches():
    model = small_model()
    x = rand_image(1, 3, 21, 30)
    with torch.no_grad():
        with_branches = model(x, branches=True)
        without = model(x, branches=False)
    assert torch.equal(with_branches.bottom, without.bottom)
    assert torch.equal(with_branches.middle, without.middle)
    assert torch.equal(with_branches.top, without.top)


def test_sample_in_batch_equals_sample_alone():
    model = small_model()
    x = rand_image(3, 3, 19, 26)
    with torch.no_grad():
        batched = model(x).bottom
        alone = model(x[1:2]).bottom
    torch.testing.assert_close(batched[1:2], alone, rtol=1e-5, atol=1e-5)
    # and the samples really differ, so the comparison above means something
    assert not torch.allclose(batched[0], batched[1])


def test_output_is_input_minus_predicted_rain_and_depends_on_content():
    model = small_model()
    x = rand_image(1, 3, 16, 16)
    with torch.no_grad():
        a = model(x).bottom
        b = model(x.flip(-1)).bottom
    assert not torch.allclose(a.flip(-1), b, atol=1e-6)  # positional embedding breaks symmetry
    assert (a - x).abs().max() < 10  # a residual, not a new image


def test_grad_mode_and_inference_paths_agree():
    """The dense groups have a no-grad fast path and an autograd path; same function."""
    model = small_model(encoder_blocks=(3, 2, 1))
    x = rand_image(2, 3, 13, 10)
    with torch.no_grad():
        fast = model(x, branches=True)
    slow = model(x, branches=True)
    for a, b, name in zip(fast, slow, HCNOutput._fields):
        torch.testing.assert_close(a, b.detach(), rtol=1e-5, atol=1e-5, msg=name)


# ---------------------------------------------------------------- building blocks

def _naive_drg(group, x, skips=None):
    """DRG straight from the definition: concat the member list, then the 1x1 conv."""
    members, state, outputs = [x], x, []
    for i, (block, proj) in enumerate(zip(group.blocks, group.projections)):
        inp = state if skips is None else state + skips[i]
        r = inp + block.conv2(F.leaky_relu(block.conv1(inp), 0.2))
        members.append(r)
        outputs.append(r)
        state = F.leaky_relu(proj(torch.cat(members, dim=1)), 0.2)
    return state, outputs


@pytest.mark.parametrize("grad", [False, True])
def test_dense_group_matches_its_definition(grad):
    torch.manual_seed(0)
    group = DenseResidualGroup(5, 4)
    x = torch.randn(2, 5, 9, 11)
    skips = [torch.randn(2, 5, 9, 11) for _ in range(4)]
    want_state, want_members = _naive_drg(group, x, skips)
    with torch.set_grad_enabled(grad):
        state, members = group(x, list(skips))
    torch.testing.assert_close(state, want_state, rtol=1e-5, atol=1e-5)
    for got, want in zip(members, want_members):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_dense_projection_gradients_match_concat_conv():
    torch.manual_seed(0)
    group = DenseResidualGroup(4, 3)
    x = torch.randn(1, 4, 8, 7, requires_grad=True)
    state, _ = group(x)
    state.square().sum().backward()
    got = [p.grad.clone() for p in group.parameters()] + [x.grad.clone()]
    group.zero_grad()
    x.grad = None
    want_state, _ = _naive_drg(group, x)
    want_state.square().sum().backward()
    want = [p.grad for p in group.parameters()] + [x.grad]
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-5)


def test_pool_and_upsample_handle_odd_and_tiny_sizes():
    x = -torch.arange(15.0).view(1, 1, 3, 5)  # decreasing, so padding values win the max
    pooled = pool2(x)
    assert pooled.shape[-2:] == (2, 3)  # ceil, odd rows/cols kept via reflect padding
    assert pooled[0, 0, 1, 2] == x[0, 0, 1, 3]  # the reflected row 1 / column 3
    tiny = torch.randn(1, 2, 1, 1)
    assert torch.equal(pool2(tiny), tiny)  # replicate fallback, never 0 px
    up = upsample_to(pooled, 2, (3, 5))
    assert up.shape[-2:] == (3, 5)
    assert up[0, 0, 2, 4] == pooled[0, 0, 1, 2]


def test_positional_embedding_values():
    pe = positional_embedding(20, 4, 6)
    assert pe.shape == (1, 20, 4, 6)
    assert math.isclose(pe[0, 0, 1, 3].item(), math.sin(1.0), rel_tol=1e-6)
    assert math.isclose(pe[0, 5, 1, 0].item(), math.cos(1.0), rel_tol=1e-6)
    assert math.isclose(pe[0, 10, 2, 1].item(), math.sin(1.0), rel_tol=1e-6)
    assert math.isclose(pe[0, 15, 0, 1].item(), math.cos(1.0), rel_tol=1e-6)
    f1 = 10000 ** (-2 / 10)
    assert math.isclose(pe[0, 1, 3, 0].item(), math.sin(3 * f1), rel_tol=1e-6)
    # row channels do not vary along a row, column channels not along a column
    assert torch.equal(pe[0, :10, :, 0], pe[0, :10, :, 5])
    assert torch.equal(pe[0, 10:, 0, :], pe[0, 10:, 3, :])


# ---------------------------------------------------------------- mining operator

@pytest.mark.parametrize("q_size,o_size,chunk", [
    ((1, 1), (1, 1), 4),
    ((5, 7), (3, 4), 8),     # 35 queries in 5 chunks (last one partial)
    ((12, 9), (6, 5), 17),
    ((16, 16), (8, 8), 1000),  # a single chunk
])
def test_mine_matches_unchunked_reference(q_size, o_size, chunk):
    torch.manual_seed(0)
    mine = MINE(8, reduction=4, softmax_scale=10.0, chunk=chunk)
    q = torch.randn(2, 8, *q_size)
    o = torch.randn(2, 8, *o_size)
    with torch.no_grad():
        got = mine(q, o)
        want = mine_reference(mine, q, o)
    assert got.shape == q.shape
    rel = ((got - want).abs().max() / want.abs().max()).item()
    assert rel < 1e-5


def test_mine_chunk_size_does_not_change_the_result():
    torch.manual_seed(0)
    mine = MINE(8, chunk=3)
    q, o = torch.randn(1, 8, 10, 9), torch.randn(1, 8, 5, 5)
    with torch.no_grad():
        chunked = mine(q, o)
        mine.chunk = 10_000
        whole = mine(q, o)
    torch.testing.assert_close(chunked, whole, rtol=1e-6, atol=1e-6)


def test_mine_uses_other_scale_keys():
    torch.manual_seed(0)
    mine = MINE(8, chunk=7)
    q = torch.randn(1, 8, 6, 6)
    with torch.no_grad():
        a = mine(q, torch.randn(1, 8, 3, 3))
        b = mine(q, torch.randn(1, 8, 3, 3))
    assert not torch.allclose(a, b)


def test_chunked_attention_gradients():
    """Training recomputes the attention per chunk in backward; check it against autograd."""
    torch.manual_seed(0)
    q = torch.randn(2, 9, 3, dtype=torch.float64, requires_grad=True)
    k = torch.randn(2, 3, 7, dtype=torch.float64, requires_grad=True)
    v = torch.randn(2, 7, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b, c: chunked_attention(a, b, c, 3.0, 4), (q, k, v))
    want = torch.softmax(3.0 * q @ k, dim=-1) @ v
    torch.testing.assert_close(chunked_attention(q, k, v, 3.0, 4), want)


def test_mine_parameter_count_matches_the_paper_width():
    assert sum(p.numel() for p in MINE(20, reduction=4).parameters()) == 633


def _count_calls(modules):
    counts = {m: 0 for m in modules}
    handles = [m.register_forward_hook(lambda mod, i, o: counts.__setitem__(mod, counts[mod] + 1))
               for m in modules]
    return counts, handles


@pytest.mark.parametrize("legacy", [False, True])
def test_biscsm_mining_modules_per_level(legacy):
    torch.manual_seed(0)
    block = BiSCSM(6, chunk=8, legacy=legacy)
    mines = list(block.down_mine) + list(block.up_mine)
    counts, handles = _count_calls(mines)
    shapes = []
    handles.append(block.up_mine[0 if legacy else 2].register_forward_hook(
        lambda mod, inp, out: shapes.append(tuple(inp[0].shape[-2:]))))
    with torch.no_grad():
        out = block(torch.randn(1, 6, 16, 16))
    for h in handles:
        h.remove()
    assert out.shape == (1, 6, 16, 16)
    if legacy:  # one shared module per direction, 3 calls each (released code)
        assert [counts[m] for m in mines] == [3, 0, 0, 3, 0, 0]
        assert shapes[-1] == (4, 4)  # top Up2Down query is A2, at 1/4 of the input (released code)
    else:
        assert all(counts[m] == 1 for m in mines)
        assert shapes[-1] == (2, 2)  # top Up2Down query is A1, the coarsest level


# ---------------------------------------------------------------- parameters and gradients

def test_paper_preset_parameter_count():
    model = build_model(paper().model)
    total = sum(p.numel() for p in model.parameters())
    assert 2_000_000 <= total <= 2_100_000
    assert total == 2_068_443  # bug-fixed model, everything used (docs/method.md#architecture)
    table = parameter_summary(model)
    assert "2,068,443" in table and "N13" in table and "338,778" in table


def _dead_parameters(model, x):
    model.train()
    model.zero_grad(set_to_none=True)
    out = model(x, branches=True)
    sum(y.mean() for y in out).backward()
    return {name for name, p in model.named_parameters() if p.grad is None}


def test_every_parameter_receives_gradient():
    model = small_model(encoder_blocks=(2, 2, 1))
    assert _dead_parameters(model, rand_image(1, 3, 24, 20)) == set()
    # and the gradients are real, not structural zeros (PReLU slopes are exempt: with a
    # tiny embedding width their input can be all positive, which zeroes the slope grad)
    zero = {n for n, p in model.named_parameters()
            if not p.grad.abs().sum() > 0 and not n.endswith((".1.weight"))}
    assert zero == set()


def test_legacy_quirks_leave_the_authors_dead_weights():
    model = small_model(legacy_code_quirks=True)
    dead = _dead_parameters(model, rand_image(1, 3, 24, 20))
    prefixes = ["N13."]
    for name in ("N11", "N12", "N21", "N22", "N31"):
        prefixes.append(f"{name}.fuse_full.")  # decoder reuses fuse_half (released code)
        for k in (1, 2):  # one MINE per direction shared by all levels (released code)
            prefixes += [f"{name}.similarity.down_mine.{k}.", f"{name}.similarity.up_mine.{k}."]
    expected = {n for n, _ in model.named_parameters() if n.startswith(tuple(prefixes))}
    assert dead == expected
    n_dead = sum(p.numel() for n, p in model.named_parameters() if n in dead)
    one = model.N11
    mine = sum(p.numel() for p in one.similarity.down_mine[0].parameters())
    fuse = sum(p.numel() for p in one.fuse_full.parameters())
    n13 = sum(p.numel() for p in model.N13.parameters())
    assert n_dead == n13 + 5 * (fuse + 4 * mine)  # 355,538 at the paper width


def test_legacy_flag_changes_the_function_not_the_parameters():
    default = small_model()
    legacy = small_model(legacy_code_quirks=True)
    legacy.load_state_dict(default.state_dict())  # same keys either way
    x = rand_image(1, 3, 20, 20)
    with torch.no_grad():
        assert not torch.allclose(default(x).bottom, legacy(x).bottom)


def test_checkpointing_gives_the_same_gradients():
    x = rand_image(1, 3, 18, 18)
    grads = []
    for ckpt in (False, True):
        model = small_model(checkpoint_activations=ckpt).train()
        out = model(x, branches=True)
        sum(y.square().mean() for y in out).backward()
        grads.append([p.grad for p in model.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_mixed_precision_forward_and_backward():
    """The custom autograd pieces must cope with autocast's mixed dtypes (AMP on GPU)."""
    model = small_model(channels=4, encoder_blocks=(1, 1, 1)).train()
    x = rand_image(2, 3, 9, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x, branches=True)
        loss = sum(y.float().mean() for y in out)
    loss.backward()
    assert all(torch.isfinite(y.float()).all() for y in out)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.isfinite(model(x).bottom.float()).all()


def test_build_model_follows_config():
    cfg = ModelConfig(channels=4, encoder_blocks=(3, 1, 2), attention_chunk=9)
    model = build_model(cfg)
    assert model.N22.encoder[0].projections[0].in_channels == 8
    assert [len(g) for g in model.N22.encoder] == [3, 1, 2]
    assert [len(g) for g in model.N22.decoder] == [3, 1, 2]
    assert model.N11.similarity.down_mine[0].chunk == 9
    with pytest.raises(ValueError, match="encoder_blocks"):
        build_model(ModelConfig(channels=4, encoder_blocks=(2, 1)))


@pytest.mark.parametrize("bad,match", [
    (torch.rand(3, 8, 8), "shape"),
    (torch.rand(1, 1, 8, 8), "shape"),
    (torch.rand(1, 4, 8, 8), "shape"),
    (torch.randint(0, 255, (1, 3, 8, 8), dtype=torch.uint8), "floating"),
    (torch.rand(0, 3, 8, 8), "empty"),
])
def test_bad_input_gives_a_clear_error(bad, match):
    with pytest.raises(ValueError, match=match):
        small_model()(bad)


def test_wrong_dtype_gives_a_clear_error():
    with pytest.raises(ValueError, match="float64"):
        small_model()(torch.rand(1, 3, 8, 8, dtype=torch.float64))


def test_non_tensor_input_gives_a_clear_error():
    with pytest.raises(ValueError, match="torch.Tensor"):
        small_model()([[0.0]])
