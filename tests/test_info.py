"""`magicvideo info`: counts on the meta device, and the adaptor-vs-conv1d FLOPs."""
from __future__ import annotations

import json

import pytest

from magicvideo import PRESETS
from magicvideo.cli import main
from magicvideo.info import describe


def test_frame_op_flops_agree_with_torch_flop_counter():
    r = describe(PRESETS["tiny"], frames=8)
    # the flop counter sees the temporal convs but not the adaptor's elementwise ops,
    # so the step-FLOP difference of the two variants is exactly the conv1d cost
    counted = r["unet_conv1d"]["step_flops"] - r["unet_adaptor"]["step_flops"]
    assert counted == r["unet_conv1d"]["frame_op_flops"]
    assert 0 < r["unet_adaptor"]["frame_op_flops"] < counted / 50


def test_info_cli_prints_sd15_counts(capsys):
    assert main(["info", "--preset", "sd15", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["latent"] == 32 and report["frames"] == 16
    assert abs(report["unet_adaptor"]["params"]["image"] - 859_520_964) / 859_520_964 < 0.01
    assert report["unet_adaptor"]["step_flops"] > 1e12


def test_info_cli_rejects_bad_values(capsys):
    with pytest.raises(SystemExit) as err:
        main(["info", "--frames", "0"])
    assert err.value.code == 2
    assert main(["info", "--resolution", "100"]) == 2
    assert "divisible" in capsys.readouterr().err
