"""``shears deploy``: a Shears model as OpenVINO IR for the CPU, keeping the pruned zeros exact
(int8 weights, W8A8, or W8A8 with OpenVINO's sparse int8 kernel), verified against PyTorch and
profiled for which layers ran the sparse kernel."""

from __future__ import annotations


def run_deploy(cfg):  # noqa: ANN001, ANN201 - lazy: importing shears.deploy stays cheap
    from shears.deploy.run import run

    return run(cfg)
