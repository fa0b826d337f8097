"""--precision fp32|bf16|auto: the resolution of `auto` (injected CPU flags), bf16 against fp32
outputs, the scripts' records of the precision, SDPA against the chunked attention, and
scripts/bench.py's --precisions / --gpu. bf16 is emulated (slow) on CPUs without native bf16, so
every bf16 forward here is tiny."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import networks.attention as attention
import show
from config import demo
from networks import build_model
from networks.attention import attention_backend, chunked_attention
from scripts import bench, bench_worker
from utils.cli import open_model, run_main
from utils.engine.precision import Precision, cpu_flags, cpu_has_fast_bf16, resolve
from utils.errors import UserError
from utils.inference import derain
from utils.io.checkpoints import save_checkpoint
from utils.io.images import to_image, write_image
from utils.metrics.protocols import psnr
from dataset import synthetic_pairs

ROOT = Path(__file__).resolve().parents[1]
# /proc/cpuinfo excerpts: this development machine (AMD EPYC, AVX2 only) and a Sapphire Rapids.
EPYC = ("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\n"
        "flags\t\t: fpu vme de pse tsc msr sse sse2 ssse3 fma sse4_1 sse4_2 avx f16c avx2 bmi2\n")
SAPPHIRE = ("processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\nflags\t\t: fpu avx2 "
            "avx512f avx512bw avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8\n")
CASCADE_LAKE = "flags : fpu avx2 avx512f avx512bw avx512_vnni\n"  # AVX-512 but no bf16
# bf16 outputs of the shipped model against its fp32 outputs, 32 px synthetic images: measured
# 68.7-69.6 dB on the development CPU (emulated bf16); 50 leaves room for other CPUs' kernels.
MIN_BF16_PSNR_DB = 50.0


def tiny_checkpoint(path: Path) -> Path:
    cfg = demo()
    cfg.model.channels, cfg.model.encoder_blocks = 4, (1, 1, 1)
    torch.manual_seed(0)
    save_checkpoint({"config": cfg.to_dict(), "model": build_model(cfg.model).state_dict()}, path)
    return path


# ----------------------------------------------------------------------------- auto resolution
def test_cpu_flags_come_from_the_flags_line_or_a_bare_list():
    assert "avx2" in cpu_flags(EPYC) and "authenticamd" not in cpu_flags(EPYC)
    assert cpu_flags("avx2 AVX512_BF16") == {"avx2", "avx512_bf16"}
    assert "bf16" in cpu_flags("processor : 0\nFeatures : fp asimd bf16 sve\n")  # aarch64 spelling


@pytest.mark.parametrize("text, fast", [(EPYC, False), (CASCADE_LAKE, False), (SAPPHIRE, True),
                                        ("avx512f avx512_bf16", True), ("amx_bf16", True), ("", False)])
def test_cpu_has_fast_bf16_needs_avx512_bf16_or_amx(text, fast):
    assert cpu_has_fast_bf16(text) is fast


def test_auto_is_fp32_on_a_cpu_without_native_bf16_and_bf16_with_it():
    cpu = torch.device("cpu")
    plain = Precision(cpu, "auto", cpuinfo=EPYC)
    assert plain.dtype is None and plain.name == "fp32" and not plain.emulated
    assert plain.describe() == "precision: fp32 (auto: this CPU has no native bf16)"
    fast = Precision(cpu, "auto", cpuinfo=SAPPHIRE)
    assert fast.dtype == torch.bfloat16 and fast.describe() == "precision: bf16 (auto: this CPU has native bf16)"
    assert Precision(cpu, "fp32", cpuinfo=SAPPHIRE).dtype is None
    forced = Precision(cpu, "bf16", cpuinfo=EPYC)  # obeyed, with the warning's reason
    assert forced.dtype == torch.bfloat16 and forced.emulated and "slower than fp32" in forced.reason
    assert not Precision(cpu, "bf16", cpuinfo=SAPPHIRE).emulated
    assert plain.scaler.get_scale() == forced.scaler.get_scale() == 1.0  # loss scaling: fp16 only


def test_auto_on_cuda_follows_native_bf16_and_training_keeps_fp16(monkeypatch):
    import utils.engine.precision as precision

    cuda = torch.device("cuda")  # resolution only: no GPU needed
    monkeypatch.setattr(precision, "cuda_has_fast_bf16", lambda device: True)
    assert resolve("auto", cuda) == (torch.bfloat16, "auto: this GPU has native bf16")
    assert resolve("auto", cuda, training=True)[0] == torch.bfloat16
    monkeypatch.setattr(precision, "cuda_has_fast_bf16", lambda device: False)
    assert resolve("auto", cuda)[0] is None  # inference: fp32 on a GPU without native bf16
    assert resolve("auto", cuda, training=True)[0] == torch.float16  # fp16 with loss scaling
    assert resolve("bf16", cuda)[0] == torch.bfloat16
    assert resolve("auto", torch.device("mps"))[0] is None
    with pytest.raises(UserError, match="not on mps"):
        resolve("bf16", torch.device("mps"))
    with pytest.raises(UserError, match="choose one of fp32, bf16, auto"):
        resolve("fp16", torch.device("cpu"))



def test_the_grad_scaler_skips_non_finite_steps_and_keeps_a_scale_of_one():
    """Outside fp16 the GradScaler only guards: gradients exactly as computed, a step with an
    inf/NaN gradient skipped, the scale left at 1 either way."""
    precision = Precision(torch.device("cpu"), "fp32")
    weight = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    optimizer = torch.optim.SGD([weight], lr=0.5)
    for factor, expected in ((1.0, [0.5, 1.5]), (float("inf"), [0.5, 1.5]), (3.0, [-1.0, 0.0])):
        optimizer.zero_grad()
        precision.scaler.scale((weight * factor).sum()).backward()
        precision.scaler.step(optimizer)
        precision.update_scale()
        assert weight.tolist() == expected and precision.scaler.get_scale() == 1.0
    assert not Precision("mps", "fp32").scaler.is_enabled()  # no GradScaler there: the host decides


# ----------------------------------------------------------------------------- bf16 vs fp32
def test_bf16_output_agrees_with_fp32_on_the_shipped_model():
    model, _ = open_model(ROOT / "weights" / "standard.pth", torch.device("cpu"))
    rainy = synthetic_pairs("test", preset="light", size=32, count=1, seed=0)[0]["rainy"][None]
    fp32 = derain(model, rainy, precision=Precision("cpu", "fp32"))
    bf16 = derain(model, rainy, precision=Precision("cpu", "bf16"))
    assert bf16.dtype == torch.float32 and not torch.equal(bf16, fp32)  # bf16 did run
    assert psnr(to_image(bf16), to_image(fp32)) > MIN_BF16_PSNR_DB


def test_bf16_tiled_and_ensemble_outputs_are_float32_and_close():
    cfg = demo()
    cfg.model.channels, cfg.model.encoder_blocks = 4, (1, 1, 1)
    torch.manual_seed(0)
    model = build_model(cfg.model).eval()
    rainy = torch.rand(1, 3, 24, 30)
    for kwargs in ({"tile": 16, "overlap": 4}, {"ensemble": True}):
        fp32 = derain(model, rainy, **kwargs)
        bf16 = derain(model, rainy, precision=Precision("cpu", "bf16"), **kwargs)
        assert bf16.dtype == torch.float32
        assert psnr(to_image(bf16), to_image(fp32)) > MIN_BF16_PSNR_DB


# ----------------------------------------------------------------------------- the scripts
def test_show_defaults_to_auto_and_records_bf16(tmp_path, capsys):
    ckpt = tiny_checkpoint(tmp_path / "tiny.pth")
    write_image(tmp_path / "in" / "a.png", torch.rand(20, 24, 3).numpy())
    assert show.parse_args(["x.png"]).precision == "auto"
    code = run_main(show.main, [str(tmp_path / "in"), "--checkpoint", str(ckpt), "--device", "cpu",
                                "--precision", "bf16", "--out", str(tmp_path / "out")])
    assert code == 0 and (tmp_path / "out" / "a.png").is_file()
    record = json.loads((tmp_path / "out" / show.RUN_LOG_NAME).read_text().splitlines()[-1])
    assert record["precision"] == "bf16"
    assert "precision: bf16 (requested" in capsys.readouterr().err


# ----------------------------------------------------------------------------- attention
def test_attention_backend_is_sdpa_on_cuda_only():
    assert attention_backend("cuda", has_sdpa=True) == "sdpa"
    assert attention_backend("cuda", has_sdpa=False) == "chunked"
    assert attention_backend("cpu", has_sdpa=True) == "chunked"
    assert attention_backend("mps", has_sdpa=True) == "chunked"
    with pytest.raises(ValueError, match="backend"):
        chunked_attention(torch.rand(1, 2, 3), torch.rand(1, 3, 2), torch.rand(1, 2, 3), 1.0, 4,
                          backend="flash")


@pytest.mark.parametrize("dims", [(45, 180), (8, 16), (3, 5)])  # HCN's 9r x 9C, aligned, tiny
def test_sdpa_path_equals_the_chunked_path_forward_and_backward(dims, monkeypatch):
    d, dv = dims
    gen = torch.Generator().manual_seed(0)
    leaves = [torch.randn(2, 37, d, generator=gen, dtype=torch.float64),
              torch.randn(2, d, 53, generator=gen, dtype=torch.float64),
              torch.randn(2, 53, dv, generator=gen, dtype=torch.float64)]
    results = {}
    for backend in ("chunked", "sdpa"):
        q, k, v = (t.clone().requires_grad_() for t in leaves)
        keys = k / k.norm(dim=1, keepdim=True)
        out = chunked_attention(q, keys, v, 10.0, 7, backend=backend)
        grads = torch.autograd.grad((out * out.cos()).sum(), (q, k, v))
        results[backend] = (out.detach(), *grads)
    for a, b in zip(results["chunked"], results["sdpa"]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    # Query blocks (what bounds memory if torch falls back to its unfused kernel) change nothing.
    monkeypatch.setattr(attention, "_SDPA_MAX_BLOCK", 53 * 5)
    with torch.no_grad():
        blocked = chunked_attention(leaves[0], leaves[1] / leaves[1].norm(dim=1, keepdim=True),
                                    leaves[2], 10.0, 7, backend="sdpa")
    torch.testing.assert_close(blocked, results["chunked"][0], rtol=1e-10, atol=1e-10)


def test_the_model_through_sdpa_matches_the_chunked_model(monkeypatch):
    """The dispatch as on CUDA, on the CPU: the whole network's outputs and gradients agree."""
    cfg = demo()
    cfg.model.channels, cfg.model.encoder_blocks = 4, (1, 1, 1)
    torch.manual_seed(0)
    model = build_model(cfg.model).double().train()
    x = torch.rand(1, 3, 12, 10, dtype=torch.float64)
    runs = []
    for backend in ("chunked", "sdpa"):
        monkeypatch.setattr(attention, "attention_backend", lambda device_type, b=backend: b)
        model.zero_grad()
        out = model(x, branches=True)
        sum(y.square().mean() for y in out).backward()
        runs.append([y.detach() for y in out] + [p.grad.clone() for p in model.parameters()])
    for a, b in zip(*runs):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)


def test_sdpa_under_autocast_runs_in_the_autocast_dtype():
    q, k, v = torch.rand(1, 6, 45), torch.rand(1, 45, 9), torch.rand(1, 9, 180)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = chunked_attention(q.bfloat16(), k, v.bfloat16(), 10.0, 4, backend="sdpa")
    assert out.dtype == torch.bfloat16 and out.shape == (1, 6, 180)
    torch.testing.assert_close(out.float(), chunked_attention(q, k, v, 10.0, 4), rtol=0.05, atol=0.02)


# ----------------------------------------------------------------------------- scripts/bench.py
def test_bench_gpu_without_cuda_is_a_one_line_error(capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: --gpu runs")
    assert run_main(bench.main, ["--gpu", "--out", "unused.json"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --gpu needs a CUDA GPU") and "\n" not in err


def test_bench_precisions_parse_and_add_the_fp32_reference():
    assert bench.parse_precisions("bf16") == ["fp32", "bf16"]
    assert bench.parse_precisions("fp32,bf16+compile,bf16") == ["fp32", "bf16+compile", "bf16"]
    assert bench.parse_precisions("fp32+compile") == ["fp32+compile"]
    with pytest.raises(UserError, match="fp16"):
        bench.parse_precisions("fp16")
    args = bench.parse_args([])
    assert (args.sizes, args.train_batch, args.precisions) == (bench.DEFAULT_SIZES, 1, "fp32")


def test_bench_workers_compare_bf16_with_fp32_outputs(tmp_path):
    """The forward workers in-process (the CLI runs each in a subprocess): same weights and
    input in both precisions, and the PSNR of the bf16 output against the fp32 one."""
    ckpt = tiny_checkpoint(tmp_path / "tiny.pth")
    results = []
    for mode in ("fp32", "bf16"):
        args = bench.parse_args(["--checkpoint", str(ckpt), "--device", "cpu", "--repeats", "1",
                                 "--worker", f"forward:16x20:{mode}",
                                 "--dump", str(tmp_path / f"16x20_{mode}.pt")])
        results.append(bench_worker.run_worker(args))
    bench.add_agreement(results, tmp_path)
    fp32, bf16 = results
    assert (fp32["autocast"], bf16["autocast"]) == ("fp32", "bf16") and "psnr_vs_fp32_db" not in fp32
    assert bf16["psnr_vs_fp32_db"] > MIN_BF16_PSNR_DB
    table = bench.format_table(results)
    assert "| forward | 16x20 | bf16 |" in table and " dB |" in table
