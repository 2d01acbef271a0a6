"""Training under torchrun: 2 processes (gloo, DDP) give the 1-process model; only rank 0
writes; the documented torchrun command line is not eaten by torchrun's own parser."""
import torch

from cil_genreg import models
from cil_genreg.training import STATE_SUFFIX, train
from test_slabs import torchrun, TESTS
from train_problem import GAN_OPTIONS, OPTIONS, images


def test_two_processes_train_the_one_process_model(tmp_path):
    path, gan_path = tmp_path / "two.safetensors", tmp_path / "gan2.safetensors"
    torchrun(TESTS / "torchrun_train.py", path, gan_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["two.safetensors", "two.safetensors" + STATE_SUFFIX,
         "gan2.safetensors", "gan2.safetensors" + STATE_SUFFIX])
    # the WGAN-GP (explicit gradient averaging): generator and critic as in one process
    gan_one = train(data=images(), **GAN_OPTIONS)
    gan_state = torch.load(str(gan_path) + STATE_SUFFIX, weights_only=True)
    for mine, theirs in ((gan_one.model.state_dict(), gan_state["model"]),
                         (gan_one.critic.state_dict(), gan_state["critic"])):
        for name in mine:
            assert torch.allclose(mine[name], theirs[name], rtol=0, atol=1e-5), name
    two = models.load(path)
    info = models.read_metadata(path)["metadata"]
    state = torch.load(str(path) + STATE_SUFFIX, weights_only=True)
    one = train(data=images(), checkpoint=tmp_path / "one.safetensors", **OPTIONS)
    a, b = one.model.state_dict(), two.state_dict()
    # the same data order, noise and averaged gradient: equal to float rounding (the ranks'
    # gradients are summed in another order), 3 Adam steps of lr 1e-3
    for name in a:
        assert torch.allclose(a[name], b[name], rtol=0, atol=1e-5), name
    # the epoch's loss is reduced over both ranks' images
    assert abs(state["history"][0]["loss"] - one.history[0]["loss"]) <= \
        1e-5 * one.history[0]["loss"]
    assert info["world_size"] == 2
    assert models.read_metadata(tmp_path / "one.safetensors")["metadata"]["world_size"] == 1
    # the data order does not depend on the number of processes: the 2-process run, resumed
    # in one process, continues as the 1-process run does
    longer = dict(OPTIONS, epochs=2)
    a = train(data=images(), checkpoint=tmp_path / "one.safetensors", resume=True, **longer)
    b = train(data=images(), checkpoint=path, resume=True, **longer)
    for name, value in a.model.state_dict().items():
        assert torch.allclose(value, b.model.state_dict()[name], rtol=0, atol=2e-5), name
    assert models.read_metadata(path)["metadata"]["world_size"] == 1


def test_documented_torchrun_command_line_reaches_the_train_options():
    from torch.distributed.run import get_args_parser
    from cil_genreg.cli import build_parser
    line = ["--nproc_per_node", "2", "-m", "cil_genreg.cli", "--", "train", "--data", "shapes",
            "--n", "128", "--out", "m.safetensors"]
    parsed = get_args_parser().parse_args(line)
    assert parsed.nnodes == "1:1" and parsed.training_script == "cil_genreg.cli"
    args = parsed.training_script_args
    if args[:1] == ["--"]:
        args = args[1:]
    assert build_parser().parse_args(args).n == 128
    assert build_parser().parse_args(["train", "--data", "shapes", "--n-images", "64", "--out",
                                      "m.safetensors"]).n == 64
