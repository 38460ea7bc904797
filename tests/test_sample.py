"""Sampling: samplers, seeding, classifier-free guidance, the ``cddpm sample`` outputs and errors."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from cddpm import labels as L
from cddpm import sample
from cddpm.cli import main
from cddpm.diffusion import train_scheduler
from cddpm.model import ConditionalUNet, ModelConfig
from cddpm.sample import SampleRequest

LABELS = [["red sphere"], ["cyan cube", "gray cylinder"], ["yellow sphere", "blue cube", "red cylinder"]]


def small_model(sample_size: int = 16, seed: int = 0) -> ConditionalUNet:
    torch.manual_seed(seed)
    config = ModelConfig(block_out_channels=(16, 32), attention_levels=(1,), layers_per_block=1, norm_num_groups=8,
                         sample_size=sample_size)
    return ConditionalUNet(config).eval()


def make_run(path: Path, data: Path, sample_size: int = 16, step: int = 5,
             model: ConditionalUNet | None = None) -> Path:
    """A run folder in runs.py's layout holding an untrained model (EMA weights differ from the raw ones)."""
    model = small_model(sample_size) if model is None else model
    folder = path / "checkpoints" / f"step-{step}"
    folder.mkdir(parents=True)
    raw = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(raw, folder / "model.safetensors")
    save_file({k: v + 0.05 * torch.randn_like(v) if v.is_floating_point() else v for k, v in raw.items()},
              folder / "ema.safetensors")
    (folder / "state.json").write_text(json.dumps({"step": step}))
    config = {"model": model.spec.to_dict(), "train": {}, "scheduler": dict(train_scheduler().config),
              "data": str(data)}
    (path / "config.json").write_text(json.dumps(config))
    return path


class GaussianDenoiser(torch.nn.Module):
    """The exact noise predictor for data x0 ~ N(mu(label), 0.2^2) with mu linear in the multi-hot (null: mu = 0).

    Its samples must have per-channel mean mu and std 0.2, and guidance w must give mean w * mu,
    since the prediction is affine in mu.
    """

    def __init__(self, size: int = 16, var: float = 0.04, error: float = 0.0):
        super().__init__()
        self.config, self.var, self.error = ModelConfig(sample_size=size), var, error
        self.mu = torch.nn.Linear(24, 3, bias=False)
        torch.nn.init.normal_(self.mu.weight, std=0.1, generator=torch.Generator().manual_seed(0))
        self.register_buffer("alphas_cumprod", train_scheduler().alphas_cumprod)

    def mean(self, labels: torch.Tensor) -> torch.Tensor:
        return self.mu(labels)[:, :, None, None]

    def forward(self, x, t, labels):
        ab = self.alphas_cumprod[t]
        a, s, mu = ab.sqrt(), (1 - ab).sqrt(), self.mean(labels)
        x0 = mu + a * self.var / (ab * self.var + 1 - ab) * (x - a * mu)
        return (x - a * x0) / s + self.error  # error: a constant mistake in the noise prediction


@pytest.fixture(scope="module")
def model() -> ConditionalUNet:
    return small_model()


@pytest.fixture(scope="module")
def exact() -> GaussianDenoiser:
    return GaussianDenoiser()


@pytest.fixture(scope="module")
def scheduler_config() -> dict:
    return dict(train_scheduler().config)


@pytest.fixture
def run(tmp_path, tiny_root) -> Path:
    return make_run(tmp_path / "run", tiny_root)


@pytest.mark.parametrize("name", list(sample.SAMPLERS))
def test_every_sampler_gives_course_sized_images_in_range(model, scheduler_config, name):
    images = sample.generate(model, scheduler_config, LABELS, SampleRequest(sampler=name, steps=3, guidance=2.0))
    assert images.shape == (3, 3, 64, 64) and images.dtype == torch.float32
    assert torch.isfinite(images).all() and images.min() >= -1 and images.max() <= 1
    assert images.std() > 0.05  # not a constant image
    native = sample.generate(model, scheduler_config, LABELS[:1], SampleRequest(sampler=name, steps=3), size=None)
    assert native.shape == (1, 3, 16, 16)


@pytest.mark.parametrize("name, steps", [("ddpm", 100), ("ddim", 20), ("dpmsolver", 20)])
@pytest.mark.parametrize("guidance", [1.0, 2.0])
def test_every_sampler_draws_the_data_distribution_of_an_exact_denoiser(exact, scheduler_config, name, steps,
                                                                       guidance):
    images = sample.generate(exact, scheduler_config, LABELS, SampleRequest(sampler=name, steps=steps, guidance=guidance),
                             size=None)
    mu = guidance * exact.mean(L.encode_batch(LABELS)).detach()  # guidance w scales the mean: mu_w = w * mu
    assert (mu.abs() < 0.6).all()  # far enough from the clamp at +-1 to read the mean
    torch.testing.assert_close(images.mean((2, 3), keepdim=True), mu, rtol=0, atol=0.05)
    assert 0.15 < (images - mu).std() < 0.25  # the data's std 0.2: neither collapsed nor noisy


@pytest.mark.parametrize("name", list(sample.SAMPLERS))
def test_samplers_survive_a_slightly_wrong_noise_prediction(scheduler_config, name):
    # at t = 999 of the cosine schedule x0 = (x - sigma * eps) / alpha amplifies an eps error 2e4 times;
    # unless x0 is clipped (DPM-Solver++: thresholding), an error of 0.01 turns the images into noise
    images = sample.generate(GaussianDenoiser(error=0.01), scheduler_config, LABELS,
                             SampleRequest(sampler=name, steps=20), size=None)
    mu = GaussianDenoiser().mean(L.encode_batch(LABELS)).detach()
    assert (images - mu).abs().mean() < 0.3


def test_same_seed_same_images_whatever_the_batch_size(model, scheduler_config):
    # DDPM is stochastic at every step: its step noise must be per image too
    def draw(batch_size: int, seed: int = 7) -> torch.Tensor:
        request = SampleRequest(sampler="ddpm", steps=4, guidance=2.0, seed=seed, batch_size=batch_size)
        return sample.generate(model, scheduler_config, LABELS, request, size=None)

    whole = draw(3)
    assert (whole.abs() < 1).float().mean() > 0.3  # enough unclamped pixels for the comparison to mean something
    torch.testing.assert_close(draw(3), whole, rtol=0, atol=0)
    for batch_size in (1, 2):
        torch.testing.assert_close(draw(batch_size), whole, rtol=0, atol=1e-5)
    other = draw(3, seed=8)
    assert (other - whole).abs().mean() > 0.05


def test_image_seeds_differ_across_images_and_seeds():
    seeds = {sample.image_seed(s, i) for s in range(4) for i in range(50)}
    assert len(seeds) == 200
    noise = [torch.randn(3, generator=g) for g in sample.generators(0, [0, 1, 0])]
    assert torch.equal(noise[0], noise[2]) and not torch.equal(noise[0], noise[1])


class CountingModel(torch.nn.Module):
    """Wraps a model and records the batch size of every forward pass."""

    def __init__(self, model):
        super().__init__()
        self.model, self.config, self.batches = model, model.config, []

    def forward(self, x, t, labels):
        self.batches.append(len(x))
        return self.model(x, t, labels)


def test_guidance_one_is_plain_conditional_sampling(exact, scheduler_config):
    counting = CountingModel(exact)
    for name in ("ddpm", "dpmsolver"):
        counting.batches.clear()
        guided = sample.generate(counting, scheduler_config, LABELS,
                                 SampleRequest(sampler=name, steps=3, guidance=1.0, seed=3), size=None)
        assert counting.batches == [3, 3, 3]  # no null half at w = 1
        # the plain conditional loop, written out with the diffusers scheduler
        sampler = sample.make_sampler(name, scheduler_config, 3)
        gens = sample.generators(3, range(3))
        x = torch.cat([torch.randn(1, 3, 16, 16, generator=g) for g in gens])
        cond = L.encode_batch(LABELS)
        with torch.no_grad():
            for t in sampler.timesteps:
                x = sampler.step(exact(x, t, cond), t, x, generator=gens).prev_sample
        assert (x.abs() < 1).all()
        torch.testing.assert_close(guided, x, rtol=0, atol=0)
    counting.batches.clear()
    sample.generate(counting, scheduler_config, LABELS, SampleRequest(steps=2, guidance=3.0), size=None)
    assert counting.batches == [6, 6]  # conditional and null rows in one forward


def test_guided_prediction_extrapolates_from_the_null_prediction(model):
    x, t, cond = torch.randn(2, 3, 16, 16), torch.tensor(500), L.encode_batch(LABELS[:2])
    with torch.no_grad():
        cond_pred, null_pred = model(x, t, cond), model(x, t, torch.zeros_like(cond))
        guided = sample._predict(model, x, t, cond, 3.0)
    torch.testing.assert_close(guided, null_pred + 3.0 * (cond_pred - null_pred), rtol=1e-4, atol=1e-4)
    assert (guided - cond_pred).abs().mean() > 1e-3


def test_denoising_frames_run_from_noise_to_the_sampled_image(model, scheduler_config):
    frames = sample.denoise_frames(model, scheduler_config, frames=8, request=SampleRequest(steps=10, seed=4))
    assert frames.shape == (8, 3, 64, 64)
    image = sample.generate(model, scheduler_config, [list(sample.DENOISE_LABELS)], SampleRequest(steps=10, seed=4))
    torch.testing.assert_close(frames[-1:], image, rtol=0, atol=1e-6)
    assert frames[0].abs().mean() > frames[-1].abs().mean() * 0.5  # the first frame is (clamped) noise
    assert sample.denoise_frames(model, scheduler_config, frames=8,
                                 request=SampleRequest(steps=3)).shape[0] == 4  # only 4 states exist


@pytest.mark.parametrize("name", list(sample.SAMPLERS))
def test_a_built_sampler_gives_the_images_of_its_name_and_serves_several_calls(model, scheduler_config, name):
    built = sample.make_sampler(name, scheduler_config, 3)
    by_name = sample.generate(model, scheduler_config, LABELS, SampleRequest(sampler=name, steps=3, seed=2), size=None)
    torch.testing.assert_close(sample.generate(model, built, LABELS, SampleRequest(seed=2), size=None),
                               by_name, rtol=0, atol=0)
    frames = sample.denoise_frames(model, built, LABELS[0], frames=4, request=SampleRequest(steps=3), size=None)
    torch.testing.assert_close(frames, sample.denoise_frames(model, scheduler_config, LABELS[0], frames=4,
                                                             request=SampleRequest(sampler=name, steps=3), size=None),
                               rtol=0, atol=0)
    torch.testing.assert_close(sample.generate(model, built, LABELS, SampleRequest(seed=2), size=None),
                               by_name, rtol=0, atol=0)  # the strip left no state behind
    with pytest.raises(ValueError, match="steps 5 given with a sampler set to 3"):
        sample.generate(model, built, LABELS, SampleRequest(steps=5))


def test_sample_split_builds_its_sampler_once(run, tmp_path, monkeypatch):
    built, make = [], sample.make_sampler

    def counting(*args, **kwargs):
        built.append(make(*args, **kwargs))
        return built[-1]

    monkeypatch.setattr(sample, "make_sampler", counting)
    metrics = sample.sample_split(run, tmp_path / "o", SampleRequest(sampler="ddim", steps=2), split="test",
                                  progress=False)
    assert len(built) == 1 and metrics["steps"] == 2 and metrics["sampler"] == "ddim"


def test_bad_sampler_or_steps_are_one_line_errors(scheduler_config):
    with pytest.raises(ValueError, match="unknown sampler"):
        sample.make_sampler("euler", scheduler_config)
    with pytest.raises(ValueError, match="outside 1..1000"):
        sample.make_sampler("ddim", scheduler_config, 0)
    assert sample.make_sampler("ddim", scheduler_config, 10).timesteps[0] == 999  # starts from pure noise


def test_sample_cli_writes_the_course_outputs(run, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["sample", "--run", str(run), "--split", "test", "--steps", "2", "--batch-size", "1",
                 "--out", str(out), "--seed", "1"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics == json.loads(capsys.readouterr().out)
    assert metrics["split"] == "test" and metrics["n"] == 2 and metrics["checkpoint"] == "step-5"
    assert (metrics["sampler"], metrics["steps"], metrics["guidance"], metrics["seed"]) == ("dpmsolver", 2, 1.0, 1)
    assert metrics["wall_s"] > 0 and "topk" not in metrics
    assert sorted(p.name for p in (out / "images" / "test").iterdir()) == ["0.png", "1.png"]
    assert Image.open(out / "images" / "test" / "0.png").size == (64, 64)
    assert Image.open(out / "grid_test.png").size == (2 * 66 + 2, 66 + 2)
    assert Image.open(out / "denoise.png").size == (3 * 66 + 2, 66 + 2)  # 2 steps: 3 states
    assert (out / "captions_test.png").is_file()
    # another batch size gives the same images (up to float rounding in the last bit of a pixel)
    again = tmp_path / "again"
    assert main(["sample", "--run", str(run), "--split", "test", "--steps", "2", "--out", str(again),
                 "--seed", "1"]) == 0
    first = [np.asarray(Image.open(d / "images" / "test" / "0.png"), dtype=int) for d in (out, again)]
    assert np.abs(first[0] - first[1]).max() <= 1


def test_sample_cli_labels_raw_weights_and_data_override(run, tmp_path, tiny_root):
    ema, raw = tmp_path / "ema", tmp_path / "raw"
    common = ["sample", "--run", str(run), "--steps", "2", "--labels", "red sphere,cyan cube", "gray cylinder"]
    assert main(common + ["--out", str(ema)]) == 0
    assert main(common + ["--out", str(raw), "--no-ema"]) == 0
    assert sorted(p.name for p in (ema / "images" / "labels").iterdir()) == ["0.png", "1.png"]
    pixels = [np.asarray(Image.open(d / "images" / "labels" / "0.png"), dtype=float) for d in (ema, raw)]
    assert np.abs(pixels[0] - pixels[1]).mean() > 1  # EMA by default, raw weights with --no-ema
    other = tmp_path / "other"
    (tiny_root / "new_test.json").write_text(json.dumps([["red cube"]] * 3))
    assert main(["sample", "--run", str(run), "--split", "new_test", "--steps", "2", "--data", str(tiny_root),
                 "--out", str(other)]) == 0
    assert json.loads((other / "metrics.json").read_text())["n"] == 3


@pytest.fixture(scope="module")
def evaluators(tmp_path_factory) -> tuple[Path, Path]:
    """Two untrained evaluator checkpoints in the course's format: one judges, the other judges again."""
    from cddpm.evaluation.evaluator import Evaluator, build_network

    folder = tmp_path_factory.mktemp("evaluators")
    torch.manual_seed(0)
    return tuple(Evaluator(build_network()).save(folder / f"{name}.pth") for name in ("judge", "other"))


def test_sample_cli_scores_with_the_evaluator(run, tmp_path, evaluators):
    judge = evaluators[0]
    assert main(["sample", "--run", str(run), "--split", "test", "--sampler", "ddim", "--steps", "2",
                 "--evaluator", str(judge), "--out", str(tmp_path / "plain")]) == 0
    plain = json.loads((tmp_path / "plain" / "metrics.json").read_text())
    assert plain["n"] == 2 and plain["evaluator"] == str(judge)
    for key in ("topk", "exact_set", "extra_object_rate"):
        assert 0 <= plain[key] <= 1


@pytest.mark.parametrize("args, message", [
    (["--labels", "red spere"], "did you mean 'red sphere'"),
    (["--labels", "red sphere,red sphere"], "duplicate"),
    (["--split", "test", "--checkpoint", "step-99"], "step-99"),
    (["--split", "test", "--sampler", "ddim", "--steps", "5000"], "outside 1..1000"),
    (["--split", "test", "--evaluator", "nowhere.pth"], "nowhere.pth"),
    (["--split", "test", "--guidance", "nan"], "--guidance nan must be a finite number >= 0"),
    (["--split", "test", "--guidance", "-2"], "--guidance -2.0 must be a finite number >= 0"),
    (["--split", "test", "--device", "banana"], "unknown device 'banana'"),
])
def test_sample_cli_bad_input_is_a_one_line_error(run, tmp_path, capsys, args, message):
    assert main(["sample", "--run", str(run), "--out", str(tmp_path / "o")] + args) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()


def test_sample_cli_missing_run_is_a_one_line_error(tmp_path, capsys):
    assert main(["sample", "--run", str(tmp_path / "nope"), "--split", "test", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "not a training run" in err and err.count("\n") == 1


def test_sample_cli_without_a_gpu_says_so(run, tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert main(["sample", "--run", str(run), "--split", "test", "--device", "cuda", "--out", str(tmp_path / "o")]) == 2
    assert "no CUDA GPU is visible on this machine; use --device cpu" in capsys.readouterr().err


def test_sampling_again_into_the_same_folder_leaves_no_stale_image(run, tmp_path, tiny_root):
    out = tmp_path / "o"
    common = ["sample", "--run", str(run), "--sampler", "ddim", "--steps", "2", "--out", str(out)]
    assert main(common + ["--split", "test"]) == 0
    assert sorted(p.name for p in (out / "images" / "test").iterdir()) == ["0.png", "1.png"]
    (tiny_root / "test.json").write_text(json.dumps([["red cube"]]))
    assert main(common + ["--split", "test"]) == 0
    assert [p.name for p in (out / "images" / "test").iterdir()] == ["0.png"]
    assert json.loads((out / "metrics.json").read_text())["n"] == 1


@pytest.mark.parametrize("what", ["file", "foreign", "unrelated image"])
def test_sample_refuses_an_out_it_did_not_write_before_sampling(run, tmp_path, capsys, what):
    out = tmp_path / "o"
    if what == "file":
        out.write_text("mine")
        message = "is a file"
    else:
        (out / "images" / "test").mkdir(parents=True)
        (out / "metrics.json").write_text("{}")
        mine = out / ("notes.txt" if what == "foreign" else "images/test/holiday.png")
        mine.write_text("mine")
        message = "holds files a sampling run did not write"
    assert main(["sample", "--run", str(run), "--split", "test", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert out.is_file() or not (out / "images" / "test" / "0.png").exists()


def test_a_damaged_checkpoint_names_the_file_and_the_previous_one(run, tmp_path, capsys):
    newer = run / "checkpoints" / "step-9"
    newer.mkdir()
    for name in ("model.safetensors", "ema.safetensors", "state.json"):
        (newer / name).write_bytes((run / "checkpoints" / "step-5" / name).read_bytes())
    ema = newer / "ema.safetensors"
    ema.write_bytes(ema.read_bytes()[:100])  # truncated
    assert main(["sample", "--run", str(run), "--split", "test", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert f"{ema} is unreadable" in err and "pick --checkpoint step-5" in err and err.count("\n") == 1


def test_an_interrupted_sampling_leaves_no_stale_metrics_and_can_be_redone(run, tmp_path, monkeypatch):
    out = tmp_path / "o"
    common = ["sample", "--run", str(run), "--sampler", "ddim", "--steps", "2", "--out", str(out), "--split", "test"]
    assert main(common) == 0

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(sample, "generate", interrupted)
    assert main(common) == 130
    assert not (out / "metrics.json").exists() and not list((out / "images" / "test").glob("*.png"))
    monkeypatch.undo()
    assert main(common) == 0  # the interrupted folder is still recognised as a sample output
    assert json.loads((out / "metrics.json").read_text())["n"] == 2


def test_the_notebook_sampling_step_fills_from_the_profile_and_names_the_batch_folder(run, tmp_path, monkeypatch,
                                                                                         capsys, evaluators):
    from cddpm import folders
    from cddpm.workflow import profiles, steps

    monkeypatch.chdir(tmp_path)
    p = profiles.get("smoke", run=str(run), evaluator=str(tmp_path / "missing.pth"), steps=2)
    metrics, out = steps.sample(p, "test", steps.profile_request(p, seed=3))
    assert out == folders.samples(p.outputs, p.batch) / folders.tag("test", 3, "last", p.sampler, 2, max(p.guidance),
                                                                    "raw")  # the smoke profile's weights, the demo's
    assert (metrics["sampler"], metrics["steps"], metrics["guidance"], metrics["ema"]) == (p.sampler, 2,
                                                                                          max(p.guidance), False)
    assert "topk" not in metrics and "no evaluator at" in capsys.readouterr().err  # said, not silent
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        steps.sample(p, "test", evaluator="nowhere.pth")  # one named by the user must exist, as in `cddpm sample`
    judge = profiles.get("smoke", run=str(run), evaluator=str(evaluators[0]), steps=2)
    assert "topk" in steps.sample(judge, "new_test", out_dir=str(tmp_path / "o"))[0]
    ema = profiles.get("smoke", run=str(run), evaluator=str(tmp_path / "missing.pth"), steps=2, weights="ema")
    metrics, out = steps.sample(ema, "test", steps.profile_request(ema, seed=3))
    assert out.name == folders.tag("test", 3, "last", p.sampler, 2, max(p.guidance)) and metrics["ema"]
    assert out.name.split("__")[2] == "last" != folders.tag("test", 3, "last", p.sampler, 2, 1.0, "raw").split("__")[2]
    with pytest.raises(ValueError, match="weights='best'; use one of ema, raw"):
        profiles.get("smoke", weights="best")


# --- provenance: what a sample folder records, and `cddpm evaluate --images` checking against it ---------------

def test_metrics_json_records_the_conditions_data_judge_and_run(run, tmp_path, tiny_root, evaluators):
    from cddpm import data, provenance
    from cddpm.evaluation.evaluator import Evaluator

    out = tmp_path / "s"
    assert main(["sample", "--run", str(run), "--split", "test", "--steps", "2", "--evaluator", str(evaluators[0]),
                 "--out", str(out)]) == 0
    record = json.loads((out / "metrics.json").read_text())
    conditions = data.load_condition_lists(tiny_root, "test")
    assert record["conditions"] == conditions and record["conditions_sha1"] == provenance.conditions_sha(conditions)
    assert record["conditions_source"] == str(tiny_root.resolve() / "test.json")
    assert record["data"] == str(tiny_root.resolve()) and record["run_path"] == str(run.resolve())
    assert record["evaluator_sha256"] == Evaluator.load(evaluators[0]).digest()
    assert record["evaluator_train_json_sha1"] is None  # an untrained judge in the course's format records none
    conditions_file = tmp_path / "mine.json"
    conditions_file.write_text(json.dumps([["red cube"]]))
    assert main(["sample", "--run", str(run), "--conditions", str(conditions_file), "--steps", "2",
                 "--out", str(tmp_path / "c")]) == 0
    record = json.loads((tmp_path / "c" / "metrics.json").read_text())
    assert record["conditions"] == [["red cube"]] and record["conditions_source"] == str(conditions_file.resolve())


@pytest.fixture
def sampled(run, tmp_path, evaluators) -> Path:
    """A sample folder of the run's new_test conditions, judged by the first evaluator."""
    out = tmp_path / "sampled"
    assert main(["sample", "--run", str(run), "--split", "new_test", "--steps", "2", "--evaluator",
                 str(evaluators[0]), "--out", str(out)]) == 0
    return out


def evaluate(capsys, *args) -> tuple[int, dict | None, str]:
    code = main(["evaluate", *map(str, args)])
    out, err = capsys.readouterr()
    return code, json.loads(out) if code == 0 else None, err


def test_evaluate_takes_the_conditions_its_metrics_json_records(sampled, capsys, evaluators, tiny_root):
    capsys.readouterr()
    images = sampled / "images" / "new_test"
    code, result, err = evaluate(capsys, "--images", images, "--evaluator", evaluators[0])
    recorded = json.loads((sampled / "metrics.json").read_text())
    assert code == 0 and result["n"] == 1 and result["split"] == "new_test"
    assert result["conditions_sha1"] == recorded["conditions_sha1"] and result["topk"] == recorded["topk"]
    # the same conditions, named: accepted; others: refused in one line before the judge is loaded
    assert evaluate(capsys, "--images", images, "--data", tiny_root, "--split", "new_test",
                    "--evaluator", evaluators[0])[0] == 0
    code, _, err = evaluate(capsys, "--images", images, "--data", tiny_root, "--split", "test",
                            "--evaluator", "nowhere.pth")
    assert code == 2 and "was sampled for the conditions of" in err and "new_test.json" in err
    assert err.count("\n") == 1


def test_evaluate_without_a_record_asks_for_the_conditions(sampled, tmp_path, capsys, evaluators, tiny_root):
    import shutil

    loose = shutil.copytree(sampled / "images" / "new_test", tmp_path / "loose")
    code, _, err = evaluate(capsys, "--images", loose, "--evaluator", evaluators[0])
    assert code == 2 and "--data ROOT --split SPLIT or --conditions FILE" in err and err.count("\n") == 1
    code, _, err = evaluate(capsys, "--images", loose, "--split", "new_test", "--evaluator", evaluators[0])
    assert code == 2 and "needs --data ROOT" in err  # no silent default root
    assert evaluate(capsys, "--images", loose, "--data", tiny_root, "--split", "new_test",
                    "--evaluator", evaluators[0])[0] == 0


def test_evaluate_says_when_the_judge_is_another_or_learned_other_data(sampled, tmp_path, capsys, evaluators,
                                                                      tiny_root):
    from cddpm import provenance
    from cddpm.evaluation.evaluator import Evaluator, build_network

    images = sampled / "images" / "new_test"
    code, _, err = evaluate(capsys, "--images", images, "--evaluator", evaluators[0])
    assert code == 0 and "records no train.json" in err and err.count("\n") == 1  # an older judge: a note
    code, _, err = evaluate(capsys, "--images", images, "--evaluator", evaluators[1])
    assert code == 0 and f"was judged by {evaluators[0]}" in err  # re-judging is allowed, and said
    foreign = Evaluator(build_network(), trained_on="0" * 16).save(tmp_path / "foreign.pth")
    code, _, err = evaluate(capsys, "--images", images, "--evaluator", foreign)
    assert code == 0 and "warning: the judge" in err and "learned another train.json" in err
    own = Evaluator(build_network(), trained_on=provenance.train_sha(tiny_root)).save(tmp_path / "own.pth")
    code, _, err = evaluate(capsys, "--images", images, "--evaluator", own)
    assert code == 0 and "train.json" not in err
